package store

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/sagemathinc/cocalc-hosts/pkg/lazyre"
)

// finishJobs is FinishJobs on Postgres in one round trip whatever the
// batch: one statement per job, pipelined and committed together (the
// statements of one pipeline are one implicit transaction: an error rolls
// them all back). Each job's statement completes it and makes its writes
// only if it holds the lease and its host exists (finishJobSQL):
//
//	WITH j AS (UPDATE jobs … WHERE id = … AND lease_owner = … AND state = 'running' AND <hosts locked> RETURNING id),
//	     w0 AS (UPDATE project_hosts … AND EXISTS (SELECT 1 FROM j)),
//	     w1 AS (INSERT INTO cloud_vm_log … SELECT … WHERE EXISTS (SELECT 1 FROM j))
//	SELECT count(*) FROM j
//
// A job it did not change is looked at afterwards, to say why.
func (d postgresDialect) finishJobs(ctx context.Context, s *SQLStore, fs []Finish) ([]error, error) {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	changed := make([]int64, len(fs))
	err = conn.Raw(func(dc any) error {
		b := &pgx.Batch{}
		for _, f := range fs {
			q, args := s.finishStatement(f)
			b.Queue(q, args...)
		}
		res := dc.(*stdlib.Conn).Conn().SendBatch(ctx, b)
		var err error
		for i := range fs {
			if err = res.QueryRow().Scan(&changed[i]); err != nil {
				break
			}
		}
		if cerr := res.Close(); err == nil {
			err = cerr
		}
		return err
	})
	conn.Close()
	if err != nil {
		return nil, err
	}
	errs := make([]error, len(fs))
	for i, f := range fs {
		if changed[i] == 0 {
			errs[i] = s.notFinished(ctx, s.db, f)
		}
	}
	return errs, nil
}

// finishStatement is the statement that records f; see finishJobs.
func (s *SQLStore) finishStatement(f Finish) (string, []any) {
	upd, args := s.finishJobSQL(f)
	q := `WITH j AS (` + upd + ` RETURNING id)`
	for i, w := range f.Writes {
		var body string
		var wargs []any
		switch w := w.(type) {
		case HostWrite:
			h := w.Host
			if h.UpdatedAt.IsZero() {
				h.UpdatedAt = time.Now()
			}
			body, wargs = renumber(updateHostSQL, len(args))+` AND EXISTS (SELECT 1 FROM j)`, updateHostArgs(h)
		case LogWrite:
			e := w.Entry
			if e.TS.IsZero() {
				e.TS = time.Now()
			}
			body, wargs = `INSERT INTO cloud_vm_log (`+logColumns+`) SELECT `+renumber(logValues, len(args))+
				` WHERE EXISTS (SELECT 1 FROM j)`, logArgs(e)
		default:
			panic(fmt.Sprintf("store: no Postgres statement for %T", w))
		}
		q += ",\n w" + strconv.Itoa(i) + " AS (" + body + ")"
		args = append(args, wargs...)
	}
	return q + "\nSELECT count(*) FROM j", args
}

// logValues are cloud_vm_log's values typed for INSERT … SELECT, where
// Postgres cannot infer parameter types from the columns.
const logValues = `$1::text, $2::text, $3::bigint, $4::text, $5::text, $6::text, $7::text, $8::text, $9::text, $10::text, $11::text`

var placeholder = lazyre.New(`\$(\d+)`)

// renumber shifts the $N placeholders of q by offset, so that statements
// written on their own can be parts of a larger one.
func renumber(q string, offset int) string {
	return placeholder().ReplaceAllStringFunc(q, func(p string) string {
		n, _ := strconv.Atoi(p[1:])
		return "$" + strconv.Itoa(n+offset)
	})
}
