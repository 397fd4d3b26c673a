package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
)

// A transfer's stream crosses a pipe to or from its command (btrfs send,
// btrfs receive, tar). With os/exec's pipes of 64 KiB and copies of 32
// KiB (and a TLS connection that hands over 16 KiB a read), every few
// dozen KiB cost system calls and a wake-up of the command, and a move
// ran at a fraction of `btrfs send | btrfs receive`. Pipes as wide as
// chunkBytes, copied in chunks of up to that size, keep both sides busy.
const chunkBytes = 1 << 20

// stream runs a command with stdin from in (nil: none) and stdout to out
// (nil: discarded); its error carries the command's stderr. Like os/exec
// it returns once the command ended and both copies did.
func stream(ctx context.Context, in io.Reader, out io.Writer, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	var inR, inW, outR, outW *os.File
	var err error
	if in != nil {
		if inR, inW, err = widePipe(); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		cmd.Stdin = inR
	}
	if out != nil {
		if outR, outW, err = widePipe(); err != nil {
			closeFiles(inR, inW)
			return fmt.Errorf("%s: %w", name, err)
		}
		cmd.Stdout = outW
	}
	err = cmd.Start()
	closeFiles(inR, outW) // the command has its own copies
	if err != nil {
		closeFiles(inW, outR)
		return fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	fed, drained := make(chan error, 1), make(chan error, 1)
	go func() {
		if in == nil {
			fed <- nil
			return
		}
		err := feed(inW, in)
		inW.Close()
		fed <- err
	}()
	go func() {
		if out == nil {
			drained <- nil
			return
		}
		// Closing the read end after a failed write ends the command
		// (EPIPE) rather than leaving it blocked.
		err := drain(out, outR)
		outR.Close()
		drained <- err
	}()
	err = cmd.Wait()
	ferr, derr := <-fed, <-drained
	if err != nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, truncateOut(msg))
		}
		return fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	if derr != nil {
		return fmt.Errorf("%s %s: output: %w", name, strings.Join(args, " "), derr)
	}
	// A command that succeeded without reading all its input (as os/exec
	// has it) is no error.
	if ferr != nil && !errors.Is(ferr, syscall.EPIPE) {
		return fmt.Errorf("%s %s: input: %w", name, strings.Join(args, " "), ferr)
	}
	return nil
}

// widePipe is a pipe that holds chunkBytes (or what the system allows).
func widePipe() (r, w *os.File, err error) {
	if r, w, err = os.Pipe(); err != nil {
		return nil, nil, err
	}
	widen(w, chunkBytes)
	return r, w, nil
}

func closeFiles(fs ...*os.File) {
	for _, f := range fs {
		if f != nil {
			f.Close()
		}
	}
}

// feed copies r to w in chunks of chunkBytes: a reader that returns a
// little at a time (a TLS record, 16 KiB) is gathered first.
func feed(w io.Writer, r io.Reader) error {
	buf := make([]byte, chunkBytes)
	for {
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		switch {
		case err == io.EOF || err == io.ErrUnexpectedEOF:
			return nil
		case err != nil:
			return err
		}
	}
}

// drain copies r to w with reads of up to chunkBytes: what a wide pipe
// holds, in one write.
func drain(w io.Writer, r io.Reader) error {
	buf := make([]byte, chunkBytes)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
