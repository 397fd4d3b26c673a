package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sagemathinc/cocalc-hosts/pkg/store"
	"github.com/sagemathinc/cocalc-hosts/pkg/testutil/pgtest"
)

// Floor is the database-only ceiling of the queue's work on this machine:
// pgbench, a C client with no work of its own, sends the statements of an
// action at their cheapest and as fast as the machine allows, with no
// worker process at all. A queue that runs the same actions, with its
// claims, leases and checks and the action's own work, cannot be faster.
type Floor struct {
	Statements string  `json:"statements"`
	Batch      int     `json:"actions_per_transaction"`
	Actions    float64 `json:"actions_per_s"`
	// CPU per action in ms: the whole machine's, and pgbench's share of
	// it (the rest is Postgres, the only other thing running).
	MachineCPU float64 `json:"machine_cpu_ms_per_action"`
	PgbenchCPU float64 `json:"pgbench_cpu_ms_per_action"`
	// CoresBusy is how much of the machine the run kept busy.
	CoresBusy float64 `json:"cores_busy"`
}

// floorStatements are one action's statements on its host hK and job jK:
// the claim and the finish by primary key (where the queue scans a
// partial index with SKIP LOCKED, and checks the lease and the host's
// lock), the host read, the sim's instance record, the host update and
// the cloud_vm_log entry. The finish puts the job back in the queue, so
// that the run can go on for as long as it likes.
const floorStatements = `\set k{i} :c + random(1, :n)
\set r{i} random(1, 2000000000)
UPDATE jobs SET state = 'running', lease_owner = 'w', lease_until = 2, attempts = attempts + 1, updated_at = 1 WHERE id = 'j' || :k{i} AND state = 'queued';
SELECT id, name, owner, provider, region, zone, status, spec, runtime, hourly_price, last_action, last_error, shared, missing_count, created_at, updated_at, deleted_at FROM project_hosts WHERE id = 'h' || :k{i};
INSERT INTO provider_state (provider, key, value, updated_at) VALUES ('sim', 'vm/' || :k{i} || '/' || :r{i}, '{"id":"i-1","name":"b1","state":"running","region":"sim-east1"}', 1) ON CONFLICT DO NOTHING;
UPDATE jobs SET state = 'queued', run_after = 0, last_error = '', updated_at = 3, finished_at = 3, lease_owner = NULL, lease_until = NULL WHERE id = 'j' || :k{i} AND lease_owner = 'w' AND state = 'running';
UPDATE project_hosts SET status = 'running', runtime = '{"instance_id":"i-1"}', last_action = 'create', updated_at = 3 WHERE id = 'h' || :k{i};
INSERT INTO cloud_vm_log (host_id, job_id, ts, action, status, provider, spec, runtime, error, pricing_version, host_status) VALUES ('h' || :k{i}, 'j' || :k{i}, 3, 'create', 'ok', 'sim', '{}', '{"instance_id":"i-1"}', '', 'v1', 'running');
`

// floorBatch is the actions per pipelined transaction: the fastest of
// 1, 10 and 50 on 2 cores (6,945, 10,658 and 5,133 actions/s over a Unix
// socket on 2026-12-07; at 50 a transaction holds its rows' locks long
// enough for the 4 clients to wait on each other).
const floorBatch = 10

// measureFloor runs pgbench on database dsn of cluster for d, after a
// warm-up, with 4 clients (as the queue's 4 workers), each on hosts of
// its own.
func measureFloor(cluster *pgtest.Cluster, dsn, tmp string, d time.Duration) (Floor, error) {
	f := Floor{Batch: floorBatch, Statements: "claim and finish by primary key, host read, sim instance insert, host update, cloud_vm_log insert; pgbench -M prepared, 4 clients, pipelined"}
	ctx := context.Background()
	st, err := store.Open(ctx, dsn, store.Options{}) // the schema
	if err != nil {
		return f, err
	}
	st.Close()
	const clients, perClient = 4, 5000
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return f, err
	}
	_, err = conn.Exec(ctx, fmt.Sprintf(`
INSERT INTO project_hosts (id, name, owner, provider, region, status, created_at, updated_at)
  SELECT 'h' || i, 'b' || i, 'bench', 'sim', 'sim-east1', 'provisioning', 1, 1 FROM generate_series(1, %[1]d) i;
INSERT INTO jobs (id, subject_id, subject_kind, action, state, attempts, max_attempts, run_after, created_at, updated_at)
  SELECT 'j' || i, 'h' || i, 'host', 'create', 'queued', 0, 5, 0, 1, 1 FROM generate_series(1, %[1]d) i`, clients*perClient))
	if err == nil {
		_, err = conn.Exec(ctx, `VACUUM ANALYZE`)
	}
	conn.Close(ctx)
	if err != nil {
		return f, fmt.Errorf("floor: seed: %w", err)
	}
	var script strings.Builder
	fmt.Fprintf(&script, "\\set c :client_id * %d\n\\set n %d\n\\startpipeline\n", perClient, perClient)
	for i := range floorBatch {
		script.WriteString(strings.ReplaceAll(floorStatements, "{i}", strconv.Itoa(i)))
	}
	script.WriteString("\\endpipeline\n")
	file := filepath.Join(tmp, "floor.sql")
	if err := os.WriteFile(file, []byte(script.String()), 0o600); err != nil {
		return f, err
	}
	pgbench := func(d time.Duration) (tps float64, used time.Duration, err error) {
		// libpq takes the database's URL where a database name goes.
		cmd := exec.Command(filepath.Join(cluster.Bin(), "pgbench"), "-n", "-M", "prepared", "-c", strconv.Itoa(clients), "-j", "2",
			"-T", strconv.Itoa(max(int(d.Seconds()), 1)), "-f", file, dsn)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return 0, 0, fmt.Errorf("pgbench: %w\n%s", err, out)
		}
		m := tpsLine.FindSubmatch(out)
		if m == nil {
			return 0, 0, fmt.Errorf("pgbench printed no tps:\n%s", out)
		}
		tps, _ = strconv.ParseFloat(string(m[1]), 64)
		ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
		return tps, time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
	}
	if _, _, err := pgbench(min(d, 3*time.Second)); err != nil {
		return f, err
	}
	busy0, t0 := machineBusy(), time.Now()
	tps, used, err := pgbench(d)
	if err != nil {
		return f, err
	}
	busy, secs := machineBusy()-busy0, time.Since(t0).Seconds()
	actions := tps * floorBatch * secs
	f.Actions = tps * floorBatch
	f.MachineCPU = ms(busy) / actions
	f.PgbenchCPU = ms(used) / actions
	f.CoresBusy = busy.Seconds() / secs
	return f, nil
}

// tpsLine is pgbench's report of transactions per second.
var tpsLine = regexp.MustCompile(`(?m)^tps = ([0-9.]+)`)

// machineBusy is the CPU time all CPUs have spent running something
// since boot: user, nice, system, irq and softirq (/proc/stat).
func machineBusy() time.Duration {
	b, _ := os.ReadFile("/proc/stat")
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal guest guest_nice
	var ticks int64
	for _, i := range []int{1, 2, 3, 6, 7} { // guests are counted in user already
		n, _ := strconv.ParseInt(f[i], 10, 64)
		ticks += n
	}
	return time.Duration(ticks) * time.Second / 100 // USER_HZ
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
