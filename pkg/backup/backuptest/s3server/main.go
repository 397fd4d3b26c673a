// Command s3server is an S3-compatible server for backup tests
// (github.com/johannesboyne/gofakes3, in memory). It is a module of its
// own, so the product does not link it; tests build it and run it as a
// separate process. It listens on -addr (default a free loopback port)
// and prints its URL as the first line of its output.
//
// It checks no credentials: tests of refused credentials use the REST
// server (rclone serve restic) instead.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address (loopback only)")
	flag.Parse()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Fprintf(os.Stdout, "http://%s\n", ln.Addr())
	srv := &http.Server{Handler: gofakes3.New(s3mem.New()).Server()}
	log.Fatal(srv.Serve(ln))
}
