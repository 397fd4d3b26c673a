package agent

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"syscall"

	"github.com/pkg/sftp"
	"golang.org/x/sys/unix"
)

// ServeSFTP serves the sftp protocol on stdin/stdout for the project
// whose container's first process is pid: as the project's user, with the
// container's root filesystem as its root (so the home, /scratch and
// ~/.snapshots are where they are in the container, and symlinks cannot
// lead out). It runs as its own process (SFTPHelper) because chroot and
// the change of user apply to a whole process; it must start as root.
func ServeSFTP(pidArg string) error {
	pid, err := strconv.Atoi(pidArg)
	if err != nil || pid <= 1 {
		return fmt.Errorf("sftp: bad container pid %q", pidArg)
	}
	if os.Geteuid() != 0 {
		return errors.New("sftp: must start as root (the agent runs it)")
	}
	if err := syscall.Chroot(fmt.Sprintf("/proc/%d/root", pid)); err != nil {
		return fmt.Errorf("sftp: enter the container's filesystem: %w", err)
	}
	if err := syscall.Chdir("/"); err != nil {
		return fmt.Errorf("sftp: %w", err)
	}
	// Once the user is dropped nothing may bring privileges back.
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("sftp: no_new_privs: %w", err)
	}
	if err := syscall.Setgroups([]int{}); err != nil {
		return fmt.Errorf("sftp: %w", err)
	}
	if err := syscall.Setgid(ProjectGID); err != nil {
		return fmt.Errorf("sftp: %w", err)
	}
	if err := syscall.Setuid(ProjectUID); err != nil {
		return fmt.Errorf("sftp: %w", err)
	}
	if syscall.Geteuid() != ProjectUID || syscall.Getegid() != ProjectGID {
		return errors.New("sftp: could not become the project's user")
	}
	syscall.Umask(0o022)
	srv, err := sftp.NewServer(stdio{}, sftp.WithServerWorkingDirectory(ProjectHome))
	if err != nil {
		return err
	}
	if err := srv.Serve(); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

type stdio struct{}

func (stdio) Read(p []byte) (int, error)  { return os.Stdin.Read(p) }
func (stdio) Write(p []byte) (int, error) { return os.Stdout.Write(p) }
func (stdio) Close() error                { return os.Stdin.Close() }
