// Command cocalc-hosts runs CoCalc project hosts on your own cloud VMs.
package main

import (
	"os"

	"github.com/sagemathinc/cocalc-hosts/pkg/cli"
	_ "github.com/sagemathinc/cocalc-hosts/providers/builtin"
)

func main() { os.Exit(cli.Main()) }
