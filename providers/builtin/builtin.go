// Package builtin links every built-in provider into the binary. Adding a
// cloud is one line here.
package builtin

import (
	_ "github.com/sagemathinc/cocalc-hosts/providers/local"
	_ "github.com/sagemathinc/cocalc-hosts/providers/sim"
)
