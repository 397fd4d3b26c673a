package storage

import (
	"io"
	"os"
	"sync"
)

// writebackBytes is how much of a received stream may arrive before the
// pool is asked to write what is dirty. Left alone, Linux keeps a whole
// received volume in the page cache (up to a tenth of memory), and the
// next step that needs it on disk (btrfs receive of the next incremental
// snapshots its parent, a commit snapshots the home) waits for all of it
// at once, after the stream: a move then took the stream's time and the
// disk's, one after the other. Written while the stream arrives, the
// disk's time mostly overlaps the stream's.
const writebackBytes = 64 << 20

// receiving counts a received stream and starts the pool's writeback
// each writebackBytes, one at a time, in the background.
type receiving struct {
	r    io.Reader
	n    int64
	next int64
	pool *os.File // nil: no writeback (the pool could not be opened)
	busy chan struct{}
	wg   sync.WaitGroup
}

// receiveCounter counts r; with dir (on the pool; "" for none) it also
// writes back as the stream arrives. close ends it.
func receiveCounter(r io.Reader, dir string) *receiving {
	c := &receiving{r: r, next: writebackBytes, busy: make(chan struct{}, 1)}
	if dir != "" {
		if f, err := os.Open(dir); err == nil {
			c.pool = f
		}
	}
	return c
}

func (c *receiving) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.pool != nil && c.n >= c.next {
		c.next = c.n + writebackBytes
		select {
		case c.busy <- struct{}{}:
			c.wg.Add(1)
			go func() {
				defer c.wg.Done()
				syncfs(c.pool) // only sooner: the data is written anyway
				<-c.busy
			}()
		default: // one is still running
		}
	}
	return n, err
}

// close waits for a writeback still running (what it writes, the next
// step would wait for) and closes the pool.
func (c *receiving) close() {
	c.wg.Wait()
	if c.pool != nil {
		c.pool.Close()
	}
}
