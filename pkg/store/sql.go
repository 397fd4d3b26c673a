package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
	"github.com/sagemathinc/cocalc-hosts/pkg/model"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
)

// SQLStore implements Store on database/sql for both backends.
type SQLStore struct {
	db      *stmtDB
	d       dialect
	changes *hub // see Subscribe

	deploymentMu sync.Mutex
	deployment   string // cached: it never changes once made
}

var _ Store = (*SQLStore)(nil)

// dialect is everything that differs between the backends.
type dialect interface {
	name() string
	// skipLocked is appended to the claim subquery: FOR UPDATE SKIP LOCKED
	// on Postgres; empty on SQLite, whose single writer serializes claims.
	skipLocked() string
	// lockRow is appended to a SELECT of one row that a transaction must
	// hold until it commits: FOR UPDATE on Postgres; empty on SQLite,
	// whose transactions here take the write lock at BEGIN.
	lockRow() string
	// translate maps a driver error to one of this package's errors.
	translate(err error) error
	// migrationLock serializes concurrent migrations inside tx.
	migrationLock(ctx context.Context, tx *sql.Tx) error
	migrationsDir() string
	// watch publishes committed changes until ctx ends, calling ready
	// once it is watching (or has tried and failed); see Subscribe.
	watch(ctx context.Context, s *SQLStore, publish func(Change), ready func())
	// publishesOwnChanges reports whether watch also sees this store's
	// own writes; if not, the store publishes them itself.
	publishesOwnChanges() bool
	// tryLead and leaderExists are the leader lock (leader.go).
	tryLead(ctx context.Context) (*Lead, error)
	leaderExists(ctx context.Context, s *SQLStore) (bool, error)
}

func newSQLStore(db *sql.DB, d dialect) *SQLStore {
	_, sqlite := d.(sqliteDialect)
	return &SQLStore{db: newStmtDB(db, sqlite), d: d, changes: newHub()}
}

// changed publishes a change this store committed, unless the backend's
// own notifications will (see Subscribe).
func (s *SQLStore) changed(t Topic, id string) {
	if !s.d.publishesOwnChanges() {
		s.changes.publish(Change{Topic: t, ID: id})
	}
}

func (s *SQLStore) Backend() string { return s.d.name() }

func (s *SQLStore) Close() error {
	s.changes.close()
	return s.db.Close()
}

// DB exposes the handle for tests and benchmarks.
func (s *SQLStore) DB() *sql.DB { return s.db.DB }

func (s *SQLStore) err(op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", op, s.d.translate(err))
}

func ms(t time.Time) int64 { return t.UnixMilli() }

func fromMS(v int64) time.Time { return time.UnixMilli(v).UTC() }

func nullMS(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := fromMS(v.Int64)
	return &t
}

func toNullMS(t *time.Time) sql.NullInt64 {
	if t == nil {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: ms(*t), Valid: true}
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only our own plain structs are marshalled here
	}
	return string(b)
}

// ---- hosts

const hostColumns = `id, name, owner, provider, region, zone, status, spec, runtime, hourly_price,
 last_action, last_error, shared, missing_count, created_at, updated_at, deleted_at`

// hostColumnsBrief reads empty text in place of spec and runtime (see
// HostFilter.Brief), so neither is copied out of the database.
var hostColumnsBrief = strings.Replace(hostColumns, "spec, runtime", "'', ''", 1)

type scanner interface{ Scan(...any) error }

func scanHost(r scanner) (model.Host, error) {
	var h model.Host
	return h, scanHostInto(r, &h, false)
}

// scanHostInto scans a host into h, which it clears first; brief leaves
// Spec and Runtime undecoded.
func scanHostInto(r scanner, h *model.Host, brief bool) error {
	*h = model.Host{}
	var spec, runtime []byte
	var created, updated int64
	var deleted sql.NullInt64
	var status string
	err := r.Scan(&h.ID, &h.Name, &h.Owner, &h.Provider, &h.Region, &h.Zone, &status, &spec, &runtime,
		&h.HourlyPrice, &h.LastAction, &h.LastError, &h.Shared, &h.MissingCount, &created, &updated, &deleted)
	if err != nil {
		return err
	}
	h.Status = model.Status(status)
	h.CreatedAt, h.UpdatedAt, h.DeletedAt = fromMS(created), fromMS(updated), nullMS(deleted)
	if brief {
		return nil
	}
	if err := model.DecodeHostSpec(spec, &h.Spec); err != nil {
		return fmt.Errorf("host %s: corrupt spec: %w", h.ID, err)
	}
	if err := model.DecodeRuntime(runtime, &h.Runtime); err != nil {
		return fmt.Errorf("host %s: corrupt runtime: %w", h.ID, err)
	}
	return nil
}

func (s *SQLStore) CreateHost(ctx context.Context, h model.Host) error {
	return s.insertHost(ctx, s.db, h)
}

// CreateHostWithJob inserts h and queues j, its first action, in one
// transaction, so that no host is left without the job that moves it on
// (a crash or a failed enqueue between the two would leave it
// provisioning forever). j must act on h.
func (s *SQLStore) CreateHostWithJob(ctx context.Context, h model.Host, j model.Job) (model.Job, error) {
	if j.Subject != model.HostSubject(h.ID) {
		return j, fmt.Errorf("create host %s: its job acts on %s", h.Name, j.Subject)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return j, s.err("create host "+h.Name, err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit this is a no-op
	if err := s.insertHost(ctx, tx, h); err != nil {
		return j, err
	}
	if j, err = s.insertJob(ctx, tx, j); err != nil {
		return j, err
	}
	if err := tx.Commit(); err != nil {
		return j, s.err("create host "+h.Name, err)
	}
	s.changed(TopicJobs, j.ID)
	return j, nil
}

func (s *SQLStore) insertHost(ctx context.Context, db execer, h model.Host) error {
	_, err := db.ExecContext(ctx, `INSERT INTO project_hosts (`+hostColumns+`)
 VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17)`,
		h.ID, h.Name, h.Owner, h.Provider, h.Region, h.Zone, string(h.Status), mustJSON(h.Spec), mustJSON(h.Runtime),
		h.HourlyPrice, h.LastAction, h.LastError, h.Shared, h.MissingCount, ms(h.CreatedAt), ms(h.UpdatedAt), toNullMS(h.DeletedAt))
	if err != nil {
		err = s.d.translate(err)
		if errkind.Is(err, errkind.Conflict) {
			return errkind.Errorf(errkind.Conflict, "a host named %q already exists", h.Name)
		}
		return fmt.Errorf("create host %s: %w", h.Name, err)
	}
	return nil
}

func (s *SQLStore) GetHost(ctx context.Context, idOrName string) (model.Host, error) {
	h, err := scanHost(s.db.QueryRowContext(ctx, `SELECT `+hostColumns+` FROM project_hosts WHERE id = $1`, idOrName))
	if errors.Is(err, sql.ErrNoRows) {
		h, err = scanHost(s.db.QueryRowContext(ctx,
			`SELECT `+hostColumns+` FROM project_hosts WHERE name = $1 AND deleted_at IS NULL`, idOrName))
	}
	if errors.Is(err, sql.ErrNoRows) && model.IDPrefix(idOrName) {
		return s.hostByIDPrefix(ctx, idOrName)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return h, &errkind.NotFoundError{Type: "host", Name: idOrName}
	}
	return h, s.err("get host "+idOrName, err)
}

// hostByIDPrefix finds the one live host whose id begins with prefix.
func (s *SQLStore) hostByIDPrefix(ctx context.Context, prefix string) (model.Host, error) {
	// prefix holds only hex digits and dashes: nothing LIKE would read
	// as a pattern. At most a few rows: two already make it ambiguous.
	var found []model.Host
	err := s.each(ctx, "get host "+prefix, func(r *sql.Rows) error {
		h, err := scanHost(r)
		found = append(found, h)
		return err
	}, `SELECT `+hostColumns+` FROM project_hosts WHERE id LIKE $1 AND deleted_at IS NULL ORDER BY created_at, id LIMIT 5`, prefix+"%")
	if err != nil {
		return model.Host{}, err
	}
	switch len(found) {
	case 0:
		return model.Host{}, &errkind.NotFoundError{Type: "host", Name: prefix}
	case 1:
		return found[0], nil
	}
	names := make([]string, len(found))
	for i, h := range found {
		names[i] = h.Name + " (" + h.ID + ")"
	}
	return model.Host{}, errkind.Errorf(errkind.Invalid, "host id %q is ambiguous: it begins the ids of %s; give more of the id, or the name",
		prefix, strings.Join(names, ", "))
}

func (s *SQLStore) ListHosts(ctx context.Context, f HostFilter) ([]model.Host, error) {
	var out []model.Host
	if err := s.EachHost(ctx, f, func(h *model.Host) error {
		out = append(out, *h)
		return nil
	}); err != nil {
		return nil, err
	}
	return out, nil
}

func (s *SQLStore) EachHost(ctx context.Context, f HostFilter, fn func(*model.Host) error) error {
	cols := hostColumns
	if f.Brief {
		cols = hostColumnsBrief
	}
	q := `SELECT ` + cols + ` FROM project_hosts WHERE ($1 = '' OR provider = $1) AND ($2 = '' OR owner = $2)
 AND updated_at >= $3`
	if !f.IncludeDeleted {
		q += ` AND deleted_at IS NULL`
	}
	var since int64 // zero selects every host: updated_at is a positive millisecond time
	if !f.UpdatedSince.IsZero() {
		since = ms(f.UpdatedSince)
	}
	rows, err := s.db.QueryContext(ctx, q+` ORDER BY created_at, id`, f.Provider, f.Owner, since)
	if err != nil {
		return s.err("list hosts", err)
	}
	defer rows.Close()
	var h model.Host
	for rows.Next() {
		if err := scanHostInto(rows, &h, f.Brief); err != nil {
			return s.err("list hosts", err)
		}
		if err := fn(&h); err != nil {
			return err
		}
	}
	return s.err("list hosts", rows.Err())
}

// updateHostSQL writes every column a host action may change. It leaves
// out shared, which only admins change (SetHostShared), so a job that
// read the row before an admin shared the host cannot undo that.
const updateHostSQL = `UPDATE project_hosts SET name=$2, owner=$3, region=$4, zone=$5, status=$6, spec=$7, runtime=$8,
 hourly_price=$9, last_action=$10, last_error=$11, missing_count=$12, updated_at=$13, deleted_at=$14,
 provider=$15
 WHERE id = $1`

func updateHostArgs(h model.Host) []any {
	return []any{h.ID, h.Name, h.Owner, h.Region, h.Zone, string(h.Status), mustJSON(h.Spec), mustJSON(h.Runtime),
		h.HourlyPrice, h.LastAction, h.LastError, h.MissingCount, ms(h.UpdatedAt), toNullMS(h.DeletedAt), h.Provider}
}

func (s *SQLStore) UpdateHost(ctx context.Context, h model.Host) error {
	return s.updateHost(ctx, s.db, h)
}

func (s *SQLStore) UpdateHostIfIdle(ctx context.Context, h model.Host, expect time.Time, log *model.LogEntry) (bool, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return false, s.err("update host "+h.ID, err)
	}
	defer tx.Rollback() //nolint:errcheck
	res, err := tx.ExecContext(ctx, updateHostSQL+` AND updated_at = $16 AND deleted_at IS NULL
 AND NOT EXISTS (SELECT 1 FROM jobs WHERE subject_kind = 'host' AND subject_id = $1 AND state IN ('queued','running'))`,
		append(updateHostArgs(h), ms(expect))...)
	if err != nil {
		return false, s.err("update host "+h.ID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return false, nil
	}
	if log != nil {
		if _, err := s.appendLog(ctx, tx, *log); err != nil {
			return false, err
		}
	}
	return true, s.err("update host "+h.ID, tx.Commit())
}

type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

func (s *SQLStore) updateHost(ctx context.Context, db execer, h model.Host) error {
	if h.UpdatedAt.IsZero() {
		h.UpdatedAt = time.Now()
	}
	res, err := db.ExecContext(ctx, updateHostSQL, updateHostArgs(h)...)
	if err != nil {
		return s.err("update host "+h.ID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return errkind.Errorf(errkind.NotFound, "host %s no longer exists", h.ID)
	}
	return nil
}

// ---- cloud_vm_log

func (s *SQLStore) AppendLog(ctx context.Context, e model.LogEntry) (model.LogEntry, error) {
	return s.appendLog(ctx, s.db, e)
}

type queryRower interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// txWriter is a transaction as a Write sees it.
type txWriter interface {
	execer
	queryRower
}

func (s *SQLStore) appendLog(ctx context.Context, db queryRower, e model.LogEntry) (model.LogEntry, error) {
	if e.TS.IsZero() {
		e.TS = time.Now()
	}
	err := db.QueryRowContext(ctx, `INSERT INTO cloud_vm_log (`+logColumns+`) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11) RETURNING id`,
		logArgs(e)...).Scan(&e.ID)
	return e, s.err("append cloud_vm_log", err)
}

const logColumns = `host_id, job_id, ts, action, status, provider, spec, runtime, error, pricing_version, host_status`

func logArgs(e model.LogEntry) []any {
	return []any{e.HostID, e.JobID, ms(e.TS), e.Action, e.Status, e.Provider, string(e.Spec), string(e.Runtime),
		e.Error, e.PricingVersion, string(e.HostStatus)}
}

func (s *SQLStore) ListLog(ctx context.Context, f LogFilter) ([]model.LogEntry, error) {
	q := `SELECT id, host_id, job_id, ts, action, status, provider, spec, runtime, error, pricing_version, host_status
 FROM cloud_vm_log WHERE ($1 = '' OR host_id = $1) AND id > $2 ORDER BY id`
	if f.Limit > 0 {
		// The newest Limit entries, still returned oldest first.
		q = `SELECT * FROM (` + strings.Replace(q, "ORDER BY id", "ORDER BY id DESC", 1) +
			fmt.Sprintf(` LIMIT %d) newest ORDER BY id`, f.Limit)
	}
	rows, err := s.db.QueryContext(ctx, q, f.HostID, f.AfterID)
	if err != nil {
		return nil, s.err("list cloud_vm_log", err)
	}
	defer rows.Close()
	var out []model.LogEntry
	for rows.Next() {
		var e model.LogEntry
		var ts int64
		var spec, runtime, hostStatus string
		if err := rows.Scan(&e.ID, &e.HostID, &e.JobID, &ts, &e.Action, &e.Status, &e.Provider, &spec, &runtime,
			&e.Error, &e.PricingVersion, &hostStatus); err != nil {
			return nil, s.err("list cloud_vm_log", err)
		}
		e.TS, e.HostStatus = fromMS(ts), model.Status(hostStatus)
		if spec != "" {
			e.Spec = json.RawMessage(spec)
		}
		if runtime != "" {
			e.Runtime = json.RawMessage(runtime)
		}
		out = append(out, e)
	}
	return out, s.err("list cloud_vm_log", rows.Err())
}

// ---- catalog cache

func (s *SQLStore) PutCatalog(ctx context.Context, c CatalogRecord) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO cloud_catalog_cache (provider, kind, scope, payload, fetched_at, expires_at)
 VALUES ($1,$2,$3,$4,$5,$6) ON CONFLICT (provider, kind, scope) DO UPDATE SET payload = excluded.payload,
 fetched_at = excluded.fetched_at, expires_at = excluded.expires_at`,
		c.Provider, c.Kind, c.Scope, string(c.Payload), ms(c.FetchedAt), ms(c.ExpiresAt))
	return s.err("cache catalog "+c.Provider+"/"+c.Kind, err)
}

func (s *SQLStore) GetCatalog(ctx context.Context, providerName, kind, scope string) (CatalogRecord, error) {
	c := CatalogRecord{Provider: providerName, Kind: kind, Scope: scope}
	var payload string
	var fetched, expires int64
	err := s.db.QueryRowContext(ctx, `SELECT payload, fetched_at, expires_at FROM cloud_catalog_cache
 WHERE provider = $1 AND kind = $2 AND scope = $3`, providerName, kind, scope).Scan(&payload, &fetched, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return c, errkind.Errorf(errkind.NotFound, "no cached %s catalog for %s", kind, providerName)
	}
	c.Payload, c.FetchedAt, c.ExpiresAt = json.RawMessage(payload), fromMS(fetched), fromMS(expires)
	return c, s.err("get catalog", err)
}

// ---- accounts and collaborators

func (s *SQLStore) EnsureAccount(ctx context.Context, id string) (model.Account, error) {
	if _, err := s.db.ExecContext(ctx, `INSERT INTO accounts (id, admin, created_at) VALUES ($1, $2, $3)
 ON CONFLICT (id) DO NOTHING`, id, false, ms(time.Now())); err != nil {
		return model.Account{}, s.err("ensure account "+id, err)
	}
	a := model.Account{ID: id}
	var created int64
	err := s.db.QueryRowContext(ctx, `SELECT admin, created_at, disabled FROM accounts WHERE id = $1`, id).Scan(&a.Admin, &created, &a.Disabled)
	a.CreatedAt = fromMS(created)
	return a, s.err("get account "+id, err)
}

func (s *SQLStore) SetAdmin(ctx context.Context, id string, admin bool) error {
	if _, err := s.EnsureAccount(ctx, id); err != nil {
		return err
	}
	_, err := s.db.ExecContext(ctx, `UPDATE accounts SET admin = $2 WHERE id = $1`, id, admin)
	return s.err("set admin "+id, err)
}

func (s *SQLStore) AddCollaborator(ctx context.Context, hostID, accountID string) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO host_collaborators (host_id, account_id, created_at) VALUES ($1,$2,$3)
 ON CONFLICT (host_id, account_id) DO NOTHING`, hostID, accountID, ms(time.Now()))
	return s.err("add collaborator", err)
}

func (s *SQLStore) RemoveCollaborator(ctx context.Context, hostID, accountID string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM host_collaborators WHERE host_id = $1 AND account_id = $2`, hostID, accountID)
	if err != nil {
		return s.err("remove collaborator", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return errkind.Errorf(errkind.NotFound, "%s is not a collaborator on host %s", accountID, hostID)
	}
	return nil
}

func (s *SQLStore) ListCollaborators(ctx context.Context, hostID string) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT account_id FROM host_collaborators WHERE host_id = $1 ORDER BY account_id`, hostID)
	if err != nil {
		return nil, s.err("list collaborators", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var a string
		if err := rows.Scan(&a); err != nil {
			return nil, s.err("list collaborators", err)
		}
		out = append(out, a)
	}
	return out, s.err("list collaborators", rows.Err())
}

func (s *SQLStore) CollaboratingOn(ctx context.Context, accountID string) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT host_id FROM host_collaborators WHERE account_id = $1 ORDER BY host_id`, accountID)
	if err != nil {
		return nil, s.err("list collaborations", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var h string
		if err := rows.Scan(&h); err != nil {
			return nil, s.err("list collaborations", err)
		}
		out = append(out, h)
	}
	return out, s.err("list collaborations", rows.Err())
}

// ---- provider state

type providerState struct{ s *SQLStore }

func (s *SQLStore) ProviderState() provider.StateStore { return providerState{s} }

func (p providerState) PutIfAbsent(ctx context.Context, prov, key string, value json.RawMessage) (bool, error) {
	res, err := p.s.db.ExecContext(ctx, `INSERT INTO provider_state (provider, key, value, updated_at) VALUES ($1,$2,$3,$4)
 ON CONFLICT (provider, key) DO NOTHING`, prov, key, string(value), ms(time.Now()))
	if err != nil {
		return false, p.s.err("provider state put", err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

func (p providerState) Put(ctx context.Context, prov, key string, value json.RawMessage) error {
	_, err := p.s.db.ExecContext(ctx, `INSERT INTO provider_state (provider, key, value, updated_at) VALUES ($1,$2,$3,$4)
 ON CONFLICT (provider, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`,
		prov, key, string(value), ms(time.Now()))
	return p.s.err("provider state put", err)
}

func (p providerState) Get(ctx context.Context, prov, key string) (json.RawMessage, error) {
	var v string
	err := p.s.db.QueryRowContext(ctx, `SELECT value FROM provider_state WHERE provider = $1 AND key = $2`, prov, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errkind.Errorf(errkind.NotFound, "%s: no record %q", prov, key)
	}
	return json.RawMessage(v), p.s.err("provider state get", err)
}

func (p providerState) Delete(ctx context.Context, prov, key string) error {
	_, err := p.s.db.ExecContext(ctx, `DELETE FROM provider_state WHERE provider = $1 AND key = $2`, prov, key)
	return p.s.err("provider state delete", err)
}

func (p providerState) List(ctx context.Context, prov string) (map[string]json.RawMessage, error) {
	rows, err := p.s.db.QueryContext(ctx, `SELECT key, value FROM provider_state WHERE provider = $1`, prov)
	if err != nil {
		return nil, p.s.err("provider state list", err)
	}
	defer rows.Close()
	out := map[string]json.RawMessage{}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return nil, p.s.err("provider state list", err)
		}
		out[k] = json.RawMessage(v)
	}
	return out, p.s.err("provider state list", rows.Err())
}

// ---- settings

func (s *SQLStore) Deployment(ctx context.Context) (string, error) {
	s.deploymentMu.Lock()
	defer s.deploymentMu.Unlock()
	if s.deployment != "" {
		return s.deployment, nil
	}
	id := "d" + strings.ReplaceAll(uuid.NewString(), "-", "")[:10]
	if _, err := s.db.ExecContext(ctx, `INSERT INTO settings (key, value) VALUES ('deployment', $1) ON CONFLICT (key) DO NOTHING`, id); err != nil {
		return "", s.err("deployment id", err)
	}
	if err := s.db.QueryRowContext(ctx, `SELECT value FROM settings WHERE key = 'deployment'`).Scan(&id); err != nil {
		return "", s.err("deployment id", err)
	}
	s.deployment = id
	return id, nil
}
