package backup

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sagemathinc/cocalc-hosts/pkg/backup/backuptest"
)

// tree writes files and returns their checksums by relative path.
func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func sums(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[rel] = fmt.Sprintf("%x", sha256.Sum256(b))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func equalSums(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d files, want %d (%v vs %v)", what, len(got), len(want), got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("%s: %s differs", what, k)
		}
	}
}

// repos returns one repository of each kind, each on a real server.
func repos(t *testing.T) map[string]Repo {
	backuptest.Need(t, "restic")
	tmp := t.TempDir()
	out := map[string]Repo{"local": {URL: filepath.Join(tmp, "local", "p1"), Password: "pw-local"}}
	if _, err := os.Stat("/usr/bin/rclone"); err == nil {
		hp := filepath.Join(tmp, "htpasswd")
		if err := backuptest.WriteHtpasswd(hp, "alice", "s3cret"); err != nil {
			t.Fatal(err)
		}
		srv, err := backuptest.StartREST(filepath.Join(tmp, "rest"), hp, "")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(srv.Stop)
		out["rest"] = Repo{URL: "rest:" + srv.URL + "/p1", Password: "pw-rest",
			Credentials: map[string]string{"username": "alice", "password": "s3cret"}}
	}
	srv, err := backuptest.StartS3(tmp)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	out["s3"] = Repo{URL: "s3:" + srv.URL + "/backups/p1", Password: "pw-s3",
		Credentials: map[string]string{"access_key_id": "key", "secret_access_key": "secret"}}
	return out
}

// TestBackupRestorePurge: for a local path, a REST server and an S3
// server, a backup restores byte for byte (all of it, and one path) after
// the tree changed, retention forgets what it does not keep, and a purge
// leaves no snapshot and no data pack behind.
func TestBackupRestorePurge(t *testing.T) {
	ctx := context.Background()
	for kind, repo := range repos(t) {
		t.Run(kind, func(t *testing.T) {
			r := &Restic{CacheDir: t.TempDir(), TmpDir: t.TempDir()}
			src := t.TempDir()
			writeTree(t, src, map[string]string{"a.txt": "one", "d/e/f.txt": "deep", "big.bin": strings.Repeat("x", 1<<20)})
			want := sums(t, src)
			if err := r.Init(ctx, repo); err != nil {
				t.Fatal(err)
			}
			if err := r.Init(ctx, repo); err != nil { // a second init finds it
				t.Fatalf("init again: %v", err)
			}
			tags := []string{"project=p1", "host=h1"}
			sum, err := r.Backup(ctx, repo, src, "h1", tags)
			if err != nil {
				t.Fatal(err)
			}
			if sum.TotalFilesProcessed != 3 {
				t.Fatalf("backup processed %d files, want 3", sum.TotalFilesProcessed)
			}
			writeTree(t, src, map[string]string{"a.txt": "two", "new.txt": "new"})
			os.RemoveAll(filepath.Join(src, "d"))
			if _, err := r.Backup(ctx, repo, src, "h1", tags); err != nil {
				t.Fatal(err)
			}
			snaps, err := r.Snapshots(ctx, repo, []string{"project=p1"})
			if err != nil || len(snaps) != 2 {
				t.Fatalf("snapshots: %v %v", snaps, err)
			}
			if snaps[0].Tag("host") != "h1" || snaps[0].Tag("project") != "p1" {
				t.Fatalf("tags: %v", snaps[0].Tags)
			}
			first, err := Pick(snaps, snaps[0].ShortID)
			if err != nil || first.ID != snaps[0].ID {
				t.Fatalf("pick by short id: %v %v", first, err)
			}

			all := t.TempDir()
			if err := r.Restore(ctx, repo, first.ID, "", all); err != nil {
				t.Fatal(err)
			}
			equalSums(t, "whole restore", sums(t, all), want)
			part := t.TempDir()
			if err := r.Restore(ctx, repo, first.ID, "d/e", part); err != nil {
				t.Fatal(err)
			}
			equalSums(t, "path restore", sums(t, part), map[string]string{"d/e/f.txt": want["d/e/f.txt"]})

			if _, err := Pick(snaps, "0000dead"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("unknown id: %v, want ErrNotFound", err)
			}
			if err := r.Restore(ctx, repo, "0000dead", "", t.TempDir()); !errors.Is(err, ErrNotFound) {
				t.Fatalf("restore of an unknown id: %v, want ErrNotFound", err)
			}
			wrong := repo
			wrong.Password = "not-it"
			if _, err := r.Snapshots(ctx, wrong, nil); !errors.Is(err, ErrAuth) {
				t.Fatalf("wrong password: %v, want ErrAuth", err)
			}

			n, err := r.Forget(ctx, repo, []string{"project=p1"}, Keep{Last: 1})
			if err != nil || n != 1 {
				t.Fatalf("forget keep-last 1: removed %d, %v", n, err)
			}
			removed, gone, err := r.Purge(ctx, repo)
			if err != nil || removed != 1 {
				t.Fatalf("purge: removed %d, %v", removed, err)
			}
			if gone != (kind == "local") {
				t.Fatalf("purge: repository removed = %v for a %s repository", gone, kind)
			}
			if kind == "local" {
				if _, err := os.Stat(repo.URL); !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("local repository still there: %v", err)
				}
				return
			}
			left, err := r.Snapshots(ctx, repo, nil)
			if err != nil || len(left) != 0 {
				t.Fatalf("after purge: %v %v", left, err)
			}
			packs, err := r.run(ctx, repo, "", "list", "packs")
			if err != nil || strings.TrimSpace(string(packs)) != "" {
				t.Fatalf("after purge the repository still holds data packs: %q %v", packs, err)
			}
		})
	}
}

// TestEmptyHome: the home of a project that never ran is empty, which
// restic alone refuses to save; it is backed up, listed, and restores as
// an empty directory.
func TestEmptyHome(t *testing.T) {
	backuptest.Need(t, "restic")
	ctx := context.Background()
	r := &Restic{CacheDir: t.TempDir(), TmpDir: t.TempDir()}
	repo := Repo{URL: filepath.Join(t.TempDir(), "p1"), Password: "pw"}
	if err := r.Init(ctx, repo); err != nil {
		t.Fatal(err)
	}
	sum, err := r.Backup(ctx, repo, t.TempDir(), "h1", []string{"project=p1"})
	if err != nil {
		t.Fatalf("backup of an empty directory: %v", err)
	}
	snaps, err := r.Snapshots(ctx, repo, []string{"project=p1"})
	if err != nil || len(snaps) != 1 || !strings.HasPrefix(snaps[0].ID, sum.SnapshotID) {
		t.Fatalf("snapshots: %+v %v, want the one of summary %+v", snaps, err, sum)
	}
	target := filepath.Join(t.TempDir(), "home")
	if err := r.Restore(ctx, repo, snaps[0].ID, "", target); err != nil {
		t.Fatal(err)
	}
	if es, err := os.ReadDir(target); err != nil || len(es) != 0 {
		t.Fatalf("restore of an empty home: %v %v, want nothing", es, err)
	}
	if left, _ := os.ReadDir(r.TmpDir); len(left) != 0 {
		t.Fatalf("left in the temporary directory: %v", left)
	}
}

// TestRefusedAndUnreachable: a REST server refuses wrong credentials (401)
// as ErrAuth, a server that does not answer is ErrUnreachable, and
// neither message carries the credentials.
func TestRefusedAndUnreachable(t *testing.T) {
	backuptest.Need(t, "restic")
	backuptest.Need(t, "rclone")
	ctx := context.Background()
	tmp := t.TempDir()
	hp := filepath.Join(tmp, "htpasswd")
	if err := backuptest.WriteHtpasswd(hp, "alice", "s3cret"); err != nil {
		t.Fatal(err)
	}
	srv, err := backuptest.StartREST(filepath.Join(tmp, "rest"), hp, "")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	r := &Restic{TmpDir: tmp}
	bad := Repo{URL: "rest:" + srv.URL + "/p1", Password: "pw", Credentials: map[string]string{"username": "alice", "password": "wrong-one"}}
	err = r.Init(ctx, bad)
	if !errors.Is(err, ErrAuth) {
		t.Fatalf("wrong REST password: %v, want ErrAuth", err)
	}
	if strings.Contains(err.Error(), "wrong-one") {
		t.Fatalf("error shows the credential: %v", err)
	}
	srv.Stop()
	gone := Repo{URL: "rest:" + srv.URL + "/p1", Password: "pw", Credentials: map[string]string{"username": "alice", "password": "s3cret"}}
	if _, err := r.Snapshots(ctx, gone, nil); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("stopped server: %v, want ErrUnreachable", err)
	}
	// No call leaves its secret files behind.
	if left, _ := filepath.Glob(filepath.Join(tmp, "restic-*")); len(left) != 0 {
		t.Fatalf("secret files left: %v", left)
	}
}

func TestCheckURL(t *testing.T) {
	for _, u := range []string{"/srv/b", "rest:http://h:8000/", "rest:https://h/x", "s3:http://127.0.0.1:9000/bucket", "s3:https://s3.example.com/b/p"} {
		if err := CheckURL(u); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
	for _, u := range []string{"", "rel/path", "rest:ftp://h/", "rest:http:///x", "s3:http://h:9000/", "rest:http://u:p@h/"} {
		if err := CheckURL(u); !errors.Is(err, ErrInvalid) {
			t.Errorf("%q: %v, want ErrInvalid", u, err)
		}
	}
}
