// Command webapp serves package webapp's test app on 127.0.0.1:PORT, or
// on HOST:PORT.
package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/sagemathinc/cocalc-hosts/pkg/testutil/webapp"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: webapp PORT|HOST:PORT")
		os.Exit(2)
	}
	addr := os.Args[1]
	if !strings.Contains(addr, ":") {
		addr = "127.0.0.1:" + addr
	}
	if err := webapp.Serve(addr); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
