// Package archtest holds the tests of the code's shape: which packages may
// import which. It has no code of its own; see ARCHITECTURE.md for the
// layers these tests keep apart.
package archtest
