package store

import (
	"context"
	"database/sql"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
)

// finishJobs is FinishJobs on Postgres in two round trips whatever the
// batch: BEGIN and one statement per job, pipelined, then COMMIT (or
// ROLLBACK when a write found no row). Each job's statement completes it
// and makes its writes only if its lease holds:
//
//	WITH j AS (UPDATE jobs … WHERE id = … AND lease_owner = … AND state = 'running' RETURNING id),
//	     w1 AS (UPDATE project_hosts … AND EXISTS (SELECT 1 FROM j) RETURNING 1),
//	     w2 AS (INSERT INTO cloud_vm_log … SELECT … WHERE EXISTS (SELECT 1 FROM j) RETURNING 1)
//	SELECT (SELECT count(*) FROM j), (SELECT count(*) FROM w1), (SELECT count(*) FROM w2)
func (d postgresDialect) finishJobs(ctx context.Context, s *SQLStore, fs []Finish) ([]error, error) {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	errs := make([]error, len(fs))
	err = conn.Raw(func(dc any) error {
		pc := dc.(*stdlib.Conn).Conn()
		b := &pgx.Batch{}
		b.Queue("BEGIN")
		writes := make([][]Write, len(fs))
		for i, f := range fs {
			q, args := finishStatement(f)
			b.Queue(q, args...)
			writes[i] = f.Writes
		}
		res := pc.SendBatch(ctx, b)
		_, err := res.Exec()
		var missing error
		for i := range fs {
			if err != nil {
				break
			}
			counts := make([]int64, 1+len(writes[i]))
			dest := make([]any, len(counts))
			for k := range counts {
				dest[k] = &counts[k]
			}
			if err = res.QueryRow().Scan(dest...); err != nil {
				break
			}
			if counts[0] == 0 {
				errs[i] = fmt.Errorf("finish job %s: %w", fs[i].JobID, ErrLeaseLost)
				continue
			}
			for k, w := range writes[i] {
				if h, ok := w.(HostWrite); ok && counts[k+1] == 0 && missing == nil {
					missing = errkind.Errorf(errkind.NotFound, "finish job %s: host %s no longer exists", fs[i].JobID, h.Host.ID)
				}
			}
		}
		if cerr := res.Close(); err == nil {
			err = cerr
		}
		end := "COMMIT"
		if err != nil || missing != nil {
			end = "ROLLBACK"
		}
		if _, eerr := pc.Exec(ctx, end); err == nil {
			err = eerr
		}
		if err == nil && missing != nil {
			err = missing
		}
		return err
	})
	return errs, err
}

// finishStatement is the statement that records f; see finishJobs.
func finishStatement(f Finish) (string, []any) {
	var finished sql.NullInt64
	if f.State == model.JobDone || f.State == model.JobFailed {
		finished = sql.NullInt64{Int64: ms(f.Now), Valid: true}
	}
	args := []any{f.JobID, f.Owner, string(f.State), ms(f.RunAfter), f.Error, ms(f.Now), finished, unclaimed(f)}
	q := `WITH j AS (UPDATE jobs SET state = $3, run_after = $4, last_error = $5, updated_at = $6,
 finished_at = $7, attempts = attempts - $8, lease_owner = NULL, lease_until = NULL WHERE id = $1 AND lease_owner = $2 AND state = 'running' RETURNING id)`
	sel := `SELECT (SELECT count(*) FROM j)`
	for i, w := range f.Writes {
		name := "w" + strconv.Itoa(i)
		var body string
		var wargs []any
		switch w := w.(type) {
		case HostWrite:
			h := w.Host
			if h.UpdatedAt.IsZero() {
				h.UpdatedAt = time.Now()
			}
			body, wargs = renumber(updateHostSQL, len(args))+` AND EXISTS (SELECT 1 FROM j) RETURNING 1`, updateHostArgs(h)
		case LogWrite:
			e := w.Entry
			if e.TS.IsZero() {
				e.TS = time.Now()
			}
			body, wargs = `INSERT INTO cloud_vm_log (`+logColumns+`) SELECT `+renumber(logValues, len(args))+
				` WHERE EXISTS (SELECT 1 FROM j) RETURNING 1`, logArgs(e)
		default:
			panic(fmt.Sprintf("store: no Postgres statement for %T", w))
		}
		q += ",\n " + name + " AS (" + body + ")"
		sel += `, (SELECT count(*) FROM ` + name + `)`
		args = append(args, wargs...)
	}
	return q + "\n" + sel, args
}

// logValues are cloud_vm_log's values typed for INSERT … SELECT, where
// Postgres cannot infer parameter types from the columns.
const logValues = `$1::text, $2::text, $3::bigint, $4::text, $5::text, $6::text, $7::text, $8::text, $9::text, $10::text, $11::text`

var placeholder = regexp.MustCompile(`\$(\d+)`)

// renumber shifts the $N placeholders of q by offset, so that statements
// written on their own can be parts of a larger one.
func renumber(q string, offset int) string {
	return placeholder.ReplaceAllStringFunc(q, func(p string) string {
		n, _ := strconv.Atoi(p[1:])
		return "$" + strconv.Itoa(n+offset)
	})
}
