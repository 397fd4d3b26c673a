package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// SnapshotsDirName is where a project sees its snapshots in its home; a
// restore never touches it.
const SnapshotsDirName = ".snapshots"

// CleanRestorePath checks a path inside a home given by a user: relative,
// without "..", and not inside .snapshots. "" and "." mean the whole home.
// It returns the cleaned path ("" for the whole home).
func CleanRestorePath(p string) (string, error) {
	if p == "" || p == "." || p == "/" {
		return "", nil
	}
	if strings.ContainsRune(p, 0) {
		return "", fmt.Errorf("path %q: %w: contains a NUL byte", p, ErrInvalid)
	}
	c := path.Clean(strings.TrimPrefix(p, "./"))
	if path.IsAbs(c) {
		return "", fmt.Errorf("path %q: %w: give a path relative to the project's home, such as work/notes.txt", p, ErrInvalid)
	}
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("path %q: %w: it leaves the project's home", p, ErrInvalid)
	}
	if c == SnapshotsDirName || strings.HasPrefix(c, SnapshotsDirName+"/") {
		return "", fmt.Errorf("path %q: %w: snapshots themselves cannot be restored", p, ErrInvalid)
	}
	return c, nil
}

// Restore puts back rel (a file or directory; "" for the whole home) of
// project id from snapshot name, replacing what is there now. Before
// changing anything it takes a snapshot named "pre-restore-<time>" so the
// restore itself can be undone.
//
// The agent runs as root inside a home the project controls, so every
// file operation goes through os.Root handles on the home and on the
// snapshot: a symlink (or one swapped in while the restore runs) can never
// lead outside them.
func (m *Manager) Restore(ctx context.Context, id, name, rel string) (safety Snapshot, err error) {
	if err := CheckID(id); err != nil {
		return Snapshot{}, err
	}
	if err := CheckSnapshotName(name); err != nil {
		return Snapshot{}, err
	}
	rel, err = CleanRestorePath(rel)
	if err != nil {
		return Snapshot{}, err
	}
	if !m.btrfs() {
		return Snapshot{}, fmt.Errorf("restore of project %s: %w", id, ErrUnsupported)
	}
	snapPath := filepath.Join(m.SnapshotDir(id), name)
	if !exists(snapPath) {
		return Snapshot{}, fmt.Errorf("snapshot %s of project %s: %w", name, id, ErrNotFound)
	}
	src, err := os.OpenRoot(snapPath)
	if err != nil {
		return Snapshot{}, fmt.Errorf("restore of project %s: %w", id, err)
	}
	defer src.Close()
	if rel != "" {
		if _, err := src.Lstat(rel); errors.Is(err, os.ErrNotExist) {
			return Snapshot{}, fmt.Errorf("restore of project %s: no %s in snapshot %s: %w", id, rel, name, ErrNotFound)
		} else if err != nil {
			return Snapshot{}, fmt.Errorf("restore of project %s: %s in snapshot %s: %w", id, rel, name, err)
		}
	}
	safety, err = m.Snapshot(ctx, id, "pre-restore-"+time.Now().UTC().Format("20060102T150405.000Z"))
	if err != nil {
		return Snapshot{}, fmt.Errorf("restore of project %s: safety snapshot: %w", id, err)
	}
	dst, err := os.OpenRoot(m.HomePath(id))
	if err != nil {
		return safety, fmt.Errorf("restore of project %s: %w", id, err)
	}
	defer dst.Close()

	var names []string
	if rel == "" {
		// The whole home: clear it (except .snapshots, where the project
		// sees its snapshots), then copy every top-level entry back.
		cur, err := readDirNames(dst, ".")
		if err != nil {
			return safety, fmt.Errorf("restore of project %s: %w", id, err)
		}
		for _, n := range cur {
			if n == SnapshotsDirName {
				continue
			}
			if err := dst.RemoveAll(n); err != nil {
				return safety, fmt.Errorf("restore of project %s: remove %s: %w", id, n, err)
			}
		}
		if names, err = readDirNames(src, "."); err != nil {
			return safety, fmt.Errorf("restore of project %s: %w", id, err)
		}
	} else {
		if dir := path.Dir(rel); dir != "." {
			if err := dst.MkdirAll(dir, 0o755); err != nil {
				return safety, fmt.Errorf("restore of project %s: %w", id, err)
			}
		}
		if err := dst.RemoveAll(rel); err != nil {
			return safety, fmt.Errorf("restore of project %s: remove %s: %w", id, rel, err)
		}
		names = []string{rel}
	}
	for _, n := range names {
		if n == SnapshotsDirName {
			continue
		}
		if err := ctx.Err(); err != nil {
			return safety, err
		}
		if err := copyTree(ctx, src, dst, n); err != nil {
			return safety, fmt.Errorf("restore of project %s: %w", id, err)
		}
	}
	return safety, nil
}

func readDirNames(r *os.Root, dir string) ([]string, error) {
	f, err := r.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}

// copyTree copies rel from src to dst (which must not have it), keeping
// modes, owners and times. Regular files are copied with copy_file_range,
// which btrfs turns into a clone: a restore shares its data with the
// snapshot instead of using the space twice.
func copyTree(ctx context.Context, src, dst *os.Root, rel string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	info, err := src.Lstat(rel)
	if err != nil {
		return err
	}
	st, _ := info.Sys().(*syscall.Stat_t)
	switch mode := info.Mode(); {
	case mode.IsDir():
		if err := dst.Mkdir(rel, 0o700); err != nil {
			return err
		}
		children, err := readDirNames(src, rel)
		if err != nil {
			return err
		}
		for _, c := range children {
			if err := copyTree(ctx, src, dst, path.Join(rel, c)); err != nil {
				return err
			}
		}
	case mode.IsRegular():
		if err := copyFile(src, dst, rel, mode.Perm()); err != nil {
			return err
		}
	case mode&fs.ModeSymlink != 0:
		target, err := src.Readlink(rel)
		if err != nil {
			return err
		}
		if err := dst.Symlink(target, rel); err != nil {
			return err
		}
		if st != nil {
			if err := dst.Lchown(rel, int(st.Uid), int(st.Gid)); err != nil {
				return err
			}
		}
		return nil
	default:
		// Devices, fifos and sockets are not data worth restoring.
		return nil
	}
	if st != nil {
		if err := dst.Lchown(rel, int(st.Uid), int(st.Gid)); err != nil {
			return err
		}
	}
	// Mode after chown: chown clears setuid bits.
	if err := dst.Chmod(rel, info.Mode()&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)); err != nil {
		return err
	}
	return dst.Chtimes(rel, info.ModTime(), info.ModTime())
}

func copyFile(src, dst *os.Root, rel string, perm fs.FileMode) error {
	in, err := src.Open(rel)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := dst.OpenFile(rel, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm&0o600|0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", rel, err)
	}
	return out.Close()
}
