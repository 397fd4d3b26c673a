package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
	"github.com/sagemathinc/cocalc-hosts/pkg/backup/backuptest"
)

// Repository servers of the running scripts, by script and variable, so
// that restserver can restart one on its address with other users.
var (
	repoServersMu sync.Mutex
	repoServers   = map[string]*backuptest.Server{}
)

// cmdRESTServer starts (or restarts on the same address) a restic REST
// server that accepts one user: restserver VAR DIR USER PASSWORD. $VAR is
// its URL; the script's end stops it.
func cmdRESTServer(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 4 {
		ts.Fatalf("usage: restserver VAR DIR USER PASSWORD")
	}
	key := ts.Getenv("WORK") + "\x00" + args[0]
	hp := ts.MkAbs(args[0] + ".htpasswd")
	ts.Check(backuptest.WriteHtpasswd(hp, args[2], args[3]))
	repoServersMu.Lock()
	old := repoServers[key]
	repoServersMu.Unlock()
	addr := ""
	if old != nil {
		old.Stop()
		addr = old.Addr
	}
	srv, err := backuptest.StartREST(ts.MkAbs(args[1]), hp, addr)
	ts.Check(err)
	repoServersMu.Lock()
	repoServers[key] = srv
	repoServersMu.Unlock()
	if old == nil {
		ts.Defer(func() {
			repoServersMu.Lock()
			s := repoServers[key]
			delete(repoServers, key)
			repoServersMu.Unlock()
			s.Stop()
		})
	}
	ts.Setenv(args[0], srv.URL)
}

// cmdS3Server starts an S3-compatible server: s3server VAR.
func cmdS3Server(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: s3server VAR")
	}
	srv, err := backuptest.StartS3(ts.MkAbs("."))
	ts.Check(err)
	ts.Defer(srv.Stop)
	ts.Setenv(args[0], srv.URL)
}

// cmdBackupCache looks at (or tampers with) the backup configuration a
// local host's agent keeps for a project:
//
//	backupcache PROJECT exists        the agent holds one
//	backupcache PROJECT show          prints version=N valid=BOOL user=U
//	backupcache PROJECT corrupt       its REST password becomes wrong
//	backupcache PROJECT expire REPO   it expired, and pointed at REPO
func cmdBackupCache(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 2 {
		ts.Fatalf("usage: backupcache PROJECT exists|show|corrupt|expire REPO")
	}
	matches, _ := filepath.Glob(filepath.Join(ts.Getenv("WORK"), "state", "cocalc-hosts", "providers", "local", "local-hosts",
		"*", "*", ".cocalc-agent", "backup", args[0]+".json"))
	if args[1] == "exists" {
		if (len(matches) > 0) == neg {
			ts.Fatalf("backup configuration of %s on a host: %v", args[0], matches)
		}
		return
	}
	if neg || len(matches) != 1 {
		ts.Fatalf("want one cached backup configuration of %s, found %v", args[0], matches)
	}
	var c agentapi.BackupConfig
	b, err := os.ReadFile(matches[0])
	ts.Check(err)
	ts.Check(json.Unmarshal(b, &c))
	st, err := os.Stat(matches[0])
	ts.Check(err)
	if st.Mode().Perm() != 0o600 {
		ts.Fatalf("%s has mode %v, want 0600", matches[0], st.Mode().Perm())
	}
	switch args[1] {
	case "show":
		fmt.Fprintf(ts.Stdout(), "version=%d valid=%v user=%s\n", c.Version, time.Now().Before(c.ExpiresAt), c.Credentials["username"])
		return
	case "corrupt":
		c.Credentials["password"] = "wrong"
	case "expire":
		if len(args) != 3 {
			ts.Fatalf("usage: backupcache PROJECT expire REPO")
		}
		c.ExpiresAt, c.Repository, c.Credentials = time.Now().Add(-time.Minute), ts.MkAbs(args[2]), nil
	default:
		ts.Fatalf("backupcache: unknown verb %q", args[1])
	}
	b, err = json.Marshal(c)
	ts.Check(err)
	ts.Check(os.WriteFile(matches[0], b, 0o600))
}

// cmdNoData fails if a restic repository still holds data packs or
// snapshots: nodata DIR.
func cmdNoData(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: nodata REPODIR")
	}
	var found []string
	for _, sub := range []string{"data", "snapshots"} {
		err := filepath.WalkDir(filepath.Join(ts.MkAbs(args[0]), sub), func(p string, d fs.DirEntry, err error) error {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			if err == nil && d.Type().IsRegular() {
				found = append(found, p)
			}
			return err
		})
		ts.Check(err)
	}
	if len(found) > 0 {
		ts.Fatalf("repository %s still holds %d file(s) of data: %v", args[0], len(found), found)
	}
}
