package queue_test

import (
	"context"
	"testing"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/queue"
	"github.com/sagemathinc/cocalc-hosts/pkg/store"
	"github.com/sagemathinc/cocalc-hosts/pkg/store/storetest"
)

// A job running when its worker is told to stop finishes within Grace,
// uncancelled, and is recorded as done.
func TestStopLetsRunningJobFinish(t *testing.T) {
	storetest.Each(t, func(tb *testing.T, st *store.SQLStore) {
		ctx := context.Background()
		svc := newService(tb, st, nil)
		sub := createHosts(tb, svc, 1)[0]
		started, finish := make(chan struct{}), make(chan struct{})
		var cut error
		slow := handlerFunc{svc: svc, run: func(jctx context.Context, job model.Job) (queue.Result, error) {
			close(started)
			<-finish
			cut = jctx.Err()
			return svc.Run(jctx, job, func(string) {})
		}}
		w := fastWorker(st, slow)
		w.Grace = time.Hour
		rctx, stop := context.WithCancel(ctx)
		ran := make(chan error)
		go func() { ran <- w.Run(rctx, false) }()
		<-started
		stop()
		close(finish)
		if err := <-ran; err != context.Canceled {
			tb.Fatalf("Run: %v", err)
		}
		if cut != nil {
			tb.Fatalf("the job was cancelled within its grace: %v", cut)
		}
		j, _ := st.GetJob(ctx, sub.Job.ID)
		h, _ := st.GetHost(ctx, sub.Host.ID)
		if j.State != model.JobDone || j.Attempts != 1 || j.LeaseOwner != "" || h.Status != model.StatusRunning {
			tb.Fatalf("job %+v, host %s", j, h.Status)
		}
	})
}
