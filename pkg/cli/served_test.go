package cli

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// localOnly are the functions of the command layer that may reach this
// process's own application (Factory.App and what opens through it: the
// store, the providers, the SSH pool), which refuses with server.url set,
// each with the reason it cannot go through the service interfaces. Every
// other function reaches the deployment only through the services that
// the Factory gives (HostService, ProjectService, BackupService,
// OpsService, AccountService, JobRunner), which a server answers too.
var localOnly = map[string]string{
	// The mode switches: each gives the domain service when server.url is
	// unset, and the client of the server when it is set.
	"Factory.Hosts": "mode switch", "Factory.Projects": "mode switch", "Factory.Backups": "mode switch",
	"Factory.Ops": "mode switch", "Factory.Jobs": "mode switch", "Factory.Accounts": "mode switch",
	"Factory.Watcher": "mode switch",
	// The direct-only accessors themselves.
	"Factory.Store": "accessor", "Factory.Providers": "accessor", "Factory.localHosts": "accessor",

	// The server and the daemons run where the database is.
	"runServe":  "`serve` is the server",
	"runWorker": "`worker` works the queue of the database it opens",
	// Commands about this machine's own configuration and files.
	"openProviderWith":        "`providers add` checks and saves a provider in this machine's config file: run it where `serve` runs",
	"runSSHKey":               "`ssh-key` prints the fleet key of the SSH pool of this process (the server's is on the server)",
	"runRepin":                "`ssh-key repin` pins a host key in this process's SSH pool",
	"runKeysRotate":           "`keys rotate` rewrites the signing keyring file on this machine (tokens.signing_keys)",
	"Factory.signingKeysPath": "`keys list|rotate` read the signing keyring file on this machine",
}

// TestCommandsGoThroughServices fails when a function of the command layer
// reaches Factory.App (or the store, providers or SSH pool through it)
// without being in localOnly: such a command would refuse in server mode,
// and the gap between the two modes would grow again. It also fails on an
// entry of localOnly that no longer does, so the list stays the truth.
func TestCommandsGoThroughServices(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	reaching := map[string]string{} // function → first position
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range file.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok || fd.Body == nil {
				continue
			}
			fn := fd.Name.Name
			if fd.Recv != nil {
				recv := fd.Recv.List[0].Type
				if star, ok := recv.(*ast.StarExpr); ok {
					recv = star.X
				}
				if id, ok := recv.(*ast.Ident); ok {
					fn = id.Name + "." + fn
				}
			}
			ast.Inspect(fd.Body, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok || !slices.Contains([]string{"App", "Store", "Providers", "localHosts"}, sel.Sel.Name) || !isFactory(sel.X) {
					return true
				}
				if _, seen := reaching[fn]; !seen {
					reaching[fn] = fset.Position(call.Pos()).String()
				}
				return true
			})
		}
	}
	for fn, pos := range reaching {
		if _, ok := localOnly[fn]; !ok {
			t.Errorf("%s: %s reaches Factory.App directly, so it refuses in server mode: call a service the Factory gives (and serve it in pkg/server, pkg/client), or add it to localOnly with the reason it must run where the database is", pos, fn)
		}
	}
	for fn := range localOnly {
		if _, ok := reaching[fn]; !ok {
			t.Errorf("localOnly lists %s, which no longer reaches Factory.App: take it off the list", fn)
		}
	}
}

// isFactory reports whether x names the Factory as the command layer
// spells it: f, or something's f (s.f, o.f).
func isFactory(x ast.Expr) bool {
	switch x := x.(type) {
	case *ast.Ident:
		return x.Name == "f"
	case *ast.SelectorExpr:
		return x.Sel.Name == "f"
	}
	return false
}
