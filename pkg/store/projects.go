package store

// ProjectStore holds projects and their placement on hosts.
type ProjectStore interface{}
