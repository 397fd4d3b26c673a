// Package builtin links every built-in provider into the binary. Adding a
// cloud is one line here.
package builtin

import (
	_ "github.com/sagemathinc/cocalc-hosts/providers/gcp"
	_ "github.com/sagemathinc/cocalc-hosts/providers/hyperstack"
	_ "github.com/sagemathinc/cocalc-hosts/providers/lambda"
	_ "github.com/sagemathinc/cocalc-hosts/providers/local"
	_ "github.com/sagemathinc/cocalc-hosts/providers/nebius"
	_ "github.com/sagemathinc/cocalc-hosts/providers/sim"
	_ "github.com/sagemathinc/cocalc-hosts/providers/ssh"
)
