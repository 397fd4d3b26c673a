package agent

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
	"github.com/sagemathinc/cocalc-hosts/pkg/storage"
	"github.com/sagemathinc/cocalc-hosts/pkg/storage/storagetest"
)

// BenchmarkDirectStream streams a snapshot of TRANSFER_BENCH_MB (default
// 512) of random data between two btrfs pools the way a direct move does
// (btrfs send, the source's counting, a pinned TLS connection over the
// loopback with its stall deadlines, btrfs receive), next to raw
// `btrfs send | btrfs receive` of the same snapshot between the same
// pools. In one process, so -cpuprofile shows where a move's data path
// spends its CPU:
//
//	go test ./pkg/agent -run '^$' -bench DirectStream -benchtime 1x -cpuprofile cpu.out
func BenchmarkDirectStream(b *testing.B) {
	mb := 512
	if v := os.Getenv("TRANSFER_BENCH_MB"); v != "" {
		fmt.Sscan(v, &mb) //nolint:errcheck // a bad value keeps the default
	}
	owner := storage.Owner{UID: os.Getuid(), GID: os.Getgid()}
	src, err := storage.New(storagetest.BtrfsPool(b), storage.KindBtrfs, owner)
	if err != nil {
		b.Fatal(err)
	}
	dstPool := storagetest.BtrfsPool(b)
	dst, err := storage.New(dstPool, storage.KindBtrfs, owner)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	id := uuid.NewString()
	if err := src.Create(ctx, id, 0); err != nil {
		b.Fatal(err)
	}
	f, err := os.Create(filepath.Join(src.HomePath(id), "base"))
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.CopyN(f, rand.Reader, int64(mb)<<20); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	if _, err := src.Snapshot(ctx, id, "s1"); err != nil {
		b.Fatal(err)
	}
	vols, err := src.Volumes(ctx, id)
	if err != nil || len(vols) != 1 {
		b.Fatalf("volumes %+v: %v", vols, err)
	}
	vol := vols[0]
	treeMB := float64(mb) * (1 << 20) / 1e6
	exec.Command("sync").Run() //nolint:errcheck // the same start for both

	var raw, direct, rawCPU, directCPU float64
	b.ResetTimer()
	for range b.N {
		rawDir := filepath.Join(dstPool, "bench-raw")
		if err := os.MkdirAll(rawDir, 0o700); err != nil {
			b.Fatal(err)
		}
		start, cpu0 := time.Now(), cpuSeconds()
		pipe := fmt.Sprintf("btrfs send -q %s | btrfs receive %s", filepath.Join(src.SnapshotDir(id), "s1"), rawDir)
		if out, err := exec.Command("sh", "-c", pipe).CombinedOutput(); err != nil {
			b.Fatalf("%s: %v: %s", pipe, err, out)
		}
		raw += treeMB / time.Since(start).Seconds()
		rawCPU += cpuSeconds() - cpu0
		if out, err := exec.Command("btrfs", "subvolume", "delete", filepath.Join(rawDir, "s1")).CombinedOutput(); err != nil {
			b.Fatalf("btrfs subvolume delete: %v: %s", err, out)
		}

		start, cpu0 = time.Now(), cpuSeconds()
		n, err := directStream(ctx, src, dst, id, vol)
		if err != nil {
			b.Fatal(err)
		}
		direct += treeMB / time.Since(start).Seconds()
		directCPU += cpuSeconds() - cpu0
		if n < int64(mb)<<20 {
			b.Fatalf("sent %d bytes of a %d MiB tree", n, mb)
		}
		// Not DropTransfer: it waits for btrfs to free the extents,
		// which takes minutes on a busy machine.
		in := filepath.Join(dstPool, "transfer", id, "in", vol.Name)
		if out, err := exec.Command("btrfs", "subvolume", "delete", in).CombinedOutput(); err != nil {
			b.Fatalf("btrfs subvolume delete: %v: %s", err, out)
		}
	}
	b.ReportMetric(raw/float64(b.N), "raw_MB/s")
	b.ReportMetric(direct/float64(b.N), "direct_MB/s")
	// CPU seconds (user and system, this process and the btrfs commands)
	// per GiB: what a loaded machine's timings hide. The two cores of a
	// small host run both ends of a move between two of its pools.
	gib := float64(b.N) * float64(mb) / 1024
	b.ReportMetric(rawCPU/gib, "raw_cpu_s/GiB")
	b.ReportMetric(directCPU/gib, "direct_cpu_s/GiB")
}

// cpuSeconds is the CPU time (user and system) of this process and of the
// children it has waited for.
func cpuSeconds() float64 {
	var t float64
	for _, who := range []int{syscall.RUSAGE_SELF, syscall.RUSAGE_CHILDREN} {
		var ru syscall.Rusage
		if err := syscall.Getrusage(who, &ru); err == nil {
			t += time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
		}
	}
	return t
}

// directStream sends vol from src to dst over the loopback as handlePush
// and acceptOne do.
func directStream(ctx context.Context, src, dst *storage.Manager, id string, vol storage.Volume) (int64, error) {
	cert, fp, err := transferCert(time.Minute)
	if err != nil {
		return 0, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	tl := tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13})
	received := make(chan error, 1)
	go func() {
		raw, err := tl.Accept()
		if err != nil {
			received <- err
			return
		}
		conn := stallConn{raw.(*tls.Conn)}
		defer conn.Close()
		br := bufio.NewReaderSize(conn, 64<<10)
		if _, err := br.ReadSlice('\n'); err != nil {
			received <- err
			return
		}
		if _, err := conn.Write([]byte("{}\n")); err != nil {
			received <- err
			return
		}
		_, err = dst.Receive(ctx, id, vol, br)
		received <- err
	}()
	conn, err := dialTransfer(ctx, ln.Addr().String(), fp, agentapi.DirectHello{Project: id})
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	cw := &countingWriter{w: stallConn{conn}, last: time.Now(), report: func(int64) {}}
	if _, err := src.Send(ctx, id, storage.Step{Name: vol.Name}, cw); err != nil {
		return cw.n, err
	}
	if err := conn.CloseWrite(); err != nil {
		return cw.n, err
	}
	return cw.n, <-received
}
