// Package backup runs restic for the host agent: it initializes a
// project's repository, backs up a directory (the agent gives it a
// read-only snapshot of the home, so a backup is consistent), lists,
// restores, forgets by retention and purges.
//
// Secrets never reach restic's argv or environment: the password, the
// repository URL (which carries REST credentials) and S3 keys are written
// to 0600 files in a private directory made for each call, and restic is
// pointed at them (--password-file, --repository-file, and the path of an
// AWS credentials file). The environment restic gets is built from
// scratch, so nothing the agent inherited (RESTIC_*, AWS_*) leaks in.
package backup

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/lazyre"
	"github.com/sagemathinc/cocalc-hosts/pkg/secrets"
)

// Errors callers tell apart.
var (
	// ErrAuth: the repository refused the credentials (401/403) or the
	// password does not open it.
	ErrAuth = errors.New("repository refused the credentials")
	// ErrUnreachable: the repository's server does not answer.
	ErrUnreachable = errors.New("repository unreachable")
	// ErrNoRepository: nothing is initialized at the location.
	ErrNoRepository = errors.New("no repository at the location")
	// ErrNotFound: no backup with that id.
	ErrNotFound = errors.New("no such backup")
	// ErrInvalid: bad input (a repository URL restic cannot use).
	ErrInvalid = errors.New("invalid")
)

// Repo is one restic repository and how to open it.
type Repo struct {
	// URL is a local path, rest:http(s)://HOST/PATH or
	// s3:http(s)://HOST/BUCKET/PATH.
	URL string
	// Credentials: for rest, "username" and "password"; for s3,
	// "access_key_id" and "secret_access_key". Empty for a local path.
	Credentials map[string]string
	// Password opens the repository.
	Password string
}

// Kind is "local", "rest" or "s3".
func (r Repo) Kind() string { return KindOf(r.URL) }

// KindOf says which kind of repository a URL names.
func KindOf(u string) string {
	switch {
	case strings.HasPrefix(u, "rest:"):
		return "rest"
	case strings.HasPrefix(u, "s3:"):
		return "s3"
	}
	return "local"
}

// CredentialKeys are the credentials each kind of repository needs.
var CredentialKeys = map[string][]string{
	"local": nil,
	"rest":  {"username", "password"},
	"s3":    {"access_key_id", "secret_access_key"},
}

// CheckURL accepts the repository URLs restic can use here.
func CheckURL(u string) error {
	switch KindOf(u) {
	case "local":
		if !filepath.IsAbs(u) {
			return fmt.Errorf("repository %q: give an absolute path, rest:http://HOST:PORT/PATH or s3:http://HOST:PORT/BUCKET: %w", u, ErrInvalid)
		}
		return nil
	default:
		rest := u[strings.IndexByte(u, ':')+1:]
		p, err := url.Parse(rest)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return fmt.Errorf("repository %q: want %s:http(s)://HOST[:PORT]/PATH: %w", u, KindOf(u), ErrInvalid)
		}
		if p.User != nil {
			return fmt.Errorf("repository %q: put credentials in the --credentials file, not in the URL: %w", redact(u), ErrInvalid)
		}
		if KindOf(u) == "s3" && strings.Trim(p.Path, "/") == "" {
			return fmt.Errorf("repository %q: an S3 repository needs a bucket: s3:http(s)://HOST[:PORT]/BUCKET: %w", u, ErrInvalid)
		}
		return nil
	}
}

// Sub returns the repository URL for one project under base.
func Sub(base, name string) string {
	return strings.TrimRight(base, "/") + "/" + name
}

// redact hides URL credentials, should any slip into a message.
func redact(s string) string {
	return credRE().ReplaceAllString(s, "://***@")
}

var credRE = lazyre.New(`://[^/@\s]*@`)

// Restic runs the restic binary.
type Restic struct {
	// Binary is restic (default "restic" on PATH).
	Binary string
	// CacheDir is restic's cache; empty runs without one.
	CacheDir string
	// TmpDir holds each call's secret files (default os.TempDir()); it
	// should be on a disk only root reads.
	TmpDir string
}

// Snapshot is one backup in a repository.
type Snapshot struct {
	ID       string    `json:"id"`
	ShortID  string    `json:"short_id"`
	Time     time.Time `json:"time"`
	Hostname string    `json:"hostname"`
	Tags     []string  `json:"tags"`
	Paths    []string  `json:"paths"`
}

// Tag returns the value of tag key=value, or "".
func (s Snapshot) Tag(key string) string {
	for _, t := range s.Tags {
		if k, v, ok := strings.Cut(t, "="); ok && k == key {
			return v
		}
	}
	return ""
}

// Summary is what one backup added.
type Summary struct {
	SnapshotID          string  `json:"snapshot_id"`
	FilesNew            int64   `json:"files_new"`
	FilesChanged        int64   `json:"files_changed"`
	DataAdded           int64   `json:"data_added"`
	TotalFilesProcessed int64   `json:"total_files_processed"`
	TotalBytesProcessed int64   `json:"total_bytes_processed"`
	TotalDuration       float64 `json:"total_duration"`
}

// call is one restic invocation's private files.
type call struct {
	dir  string
	args []string
	env  []string
}

func (r *Restic) prepare(repo Repo) (*call, error) {
	dir, err := os.MkdirTemp(r.TmpDir, "restic-")
	if err != nil {
		return nil, fmt.Errorf("restic: %w", err)
	}
	c := &call{dir: dir}
	fail := func(err error) (*call, error) {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("restic: %w", err)
	}
	repoURL := repo.URL
	env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + dir}
	switch repo.Kind() {
	case "rest":
		if u, p := repo.Credentials["username"], repo.Credentials["password"]; u != "" {
			pu, err := url.Parse(strings.TrimPrefix(repoURL, "rest:"))
			if err != nil {
				return fail(err)
			}
			pu.User = url.UserPassword(u, p)
			repoURL = "rest:" + pu.String()
		}
	case "s3":
		// restic reads S3 keys from the environment or from an AWS
		// credentials file; the file keeps them out of the environment.
		creds := fmt.Sprintf("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n",
			repo.Credentials["access_key_id"], repo.Credentials["secret_access_key"])
		f := filepath.Join(dir, "aws-credentials")
		if err := secrets.Write(f, []byte(creds)); err != nil {
			return fail(err)
		}
		env = append(env, "AWS_SHARED_CREDENTIALS_FILE="+f, "AWS_PROFILE=default")
	}
	pw, rf := filepath.Join(dir, "password"), filepath.Join(dir, "repository")
	if err := secrets.Write(pw, []byte(repo.Password+"\n")); err != nil {
		return fail(err)
	}
	if err := secrets.Write(rf, []byte(repoURL+"\n")); err != nil {
		return fail(err)
	}
	c.args = []string{"--repository-file", rf, "--password-file", pw}
	if r.CacheDir != "" {
		c.args = append(c.args, "--cache-dir", r.CacheDir)
	} else {
		c.args = append(c.args, "--no-cache")
	}
	c.env = env
	return c, nil
}

// run runs restic with args in dir (if set) and returns its stdout.
func (r *Restic) run(ctx context.Context, repo Repo, dir string, args ...string) ([]byte, error) {
	c, err := r.prepare(repo)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(c.dir)
	bin := r.Binary
	if bin == "" {
		bin = "restic"
	}
	cmd := exec.CommandContext(ctx, bin, append(c.args, args...)...)
	cmd.Env, cmd.Dir = c.env, dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return stdout.Bytes(), classify(args[0], repo, stderr.String(), err)
	}
	return stdout.Bytes(), nil
}

var (
	authRE        = lazyre.New(`\b(401|403)\b|Unauthorized|Forbidden|Access Denied|InvalidAccessKeyId|SignatureDoesNotMatch|wrong password or no key found`)
	unreachableRE = lazyre.New(`connection refused|no such host|i/o timeout|network is unreachable|no route to host|connect: `)
	noRepoRE      = lazyre.New(`Is there a repository at the following location\?|unable to open config file|config file does not exist|repository does not exist|NoSuchBucket`)
	notFoundRE    = lazyre.New(`no matching ID found|invalid id|no snapshot found`)
)

// classify turns restic's failure into one of the package's errors,
// keeping restic's last line (credentials redacted) as the detail.
func classify(verb string, repo Repo, stderr string, err error) error {
	detail := lastLine(redact(stderr))
	if detail == "" {
		detail = err.Error()
	}
	var kind error
	// Auth and network failures first: restic adds "Is there a
	// repository" to any failure to open the config.
	switch {
	case authRE().MatchString(stderr):
		kind = ErrAuth
	case unreachableRE().MatchString(stderr):
		kind = ErrUnreachable
	case noRepoRE().MatchString(stderr):
		kind = ErrNoRepository
	case notFoundRE().MatchString(stderr):
		kind = ErrNotFound
	default:
		return fmt.Errorf("restic %s on %s: %s", verb, redact(repo.URL), detail)
	}
	return fmt.Errorf("restic %s on %s: %s: %w", verb, redact(repo.URL), detail, kind)
}

// lastLine is restic's "Fatal: …" line, else its last line.
func lastLine(s string) string {
	var last string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(l, "Fatal: ") {
			return strings.TrimPrefix(l, "Fatal: ")
		}
		if l != "" {
			last = l
		}
	}
	return last
}

// Init makes the repository unless one is there already.
func (r *Restic) Init(ctx context.Context, repo Repo) error {
	_, err := r.run(ctx, repo, "", "cat", "config")
	if err == nil || !errors.Is(err, ErrNoRepository) {
		return err
	}
	if repo.Kind() == "local" {
		if err := os.MkdirAll(filepath.Dir(repo.URL), 0o700); err != nil {
			return fmt.Errorf("restic init: %w", err)
		}
	}
	_, err = r.run(ctx, repo, "", "init")
	return err
}

// EmptyMarker is the one entry of the backup of an empty directory:
// restic refuses to save a snapshot with nothing in it ("snapshot is
// empty"), and the home of a project that has never run is empty. A
// whole restore leaves it out, so an empty home comes back empty.
const EmptyMarker = ".cocalc-empty-home"

// Backup saves the tree under dir (its contents at the snapshot's root),
// tagged with tags and recorded for host.
func (r *Restic) Backup(ctx context.Context, repo Repo, dir, host string, tags []string) (Summary, error) {
	empty, err := emptyDir(dir)
	if err != nil {
		return Summary{}, fmt.Errorf("restic backup: %w", err)
	}
	if empty {
		marked, err := os.MkdirTemp(r.TmpDir, "empty-")
		if err != nil {
			return Summary{}, fmt.Errorf("restic backup: %w", err)
		}
		defer os.RemoveAll(marked)
		if err := os.Mkdir(filepath.Join(marked, EmptyMarker), 0o700); err != nil {
			return Summary{}, fmt.Errorf("restic backup: %w", err)
		}
		dir = marked
	}
	args := []string{"backup", "--json", "--host", host}
	for _, t := range tags {
		args = append(args, "--tag", t)
	}
	// Relative to dir, so the snapshot holds the home's contents at its
	// root wherever the snapshot it was taken from lived.
	out, err := r.run(ctx, repo, dir, append(args, ".")...)
	if err != nil {
		return Summary{}, err
	}
	var sum Summary
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m struct {
			Type string `json:"message_type"`
		}
		if json.Unmarshal(sc.Bytes(), &m) == nil && m.Type == "summary" {
			if err := json.Unmarshal(sc.Bytes(), &sum); err != nil {
				return Summary{}, fmt.Errorf("restic backup: summary: %w", err)
			}
		}
	}
	if sum.SnapshotID == "" {
		return Summary{}, fmt.Errorf("restic backup: no summary in its output")
	}
	return sum, nil
}

// emptyDir reports whether directory dir has no entries.
func emptyDir(dir string) (bool, error) {
	f, err := os.Open(dir)
	if err != nil {
		return false, err
	}
	defer f.Close()
	if _, err := f.Readdirnames(1); err != nil {
		if errors.Is(err, io.EOF) {
			return true, nil
		}
		return false, err
	}
	return false, nil
}

// Snapshots lists the repository's snapshots carrying every tag in tags,
// oldest first.
func (r *Restic) Snapshots(ctx context.Context, repo Repo, tags []string) ([]Snapshot, error) {
	args := []string{"snapshots", "--json"}
	if len(tags) > 0 {
		args = append(args, "--tag", strings.Join(tags, ","))
	}
	out, err := r.run(ctx, repo, "", args...)
	if err != nil {
		return nil, err
	}
	var snaps []Snapshot
	if err := json.Unmarshal(out, &snaps); err != nil {
		return nil, fmt.Errorf("restic snapshots: %w", err)
	}
	sort.Slice(snaps, func(i, j int) bool { return snaps[i].Time.Before(snaps[j].Time) })
	if snaps == nil {
		snaps = []Snapshot{}
	}
	return snaps, nil
}

// Find returns the snapshot id names: "latest", a full id or a prefix of
// one, among those carrying tags.
func (r *Restic) Find(ctx context.Context, repo Repo, tags []string, id string) (Snapshot, error) {
	snaps, err := r.Snapshots(ctx, repo, tags)
	if err != nil {
		return Snapshot{}, err
	}
	return Pick(snaps, id)
}

// Pick finds id ("latest", a full id or a unique prefix) in snaps.
func Pick(snaps []Snapshot, id string) (Snapshot, error) {
	if id == "latest" {
		if len(snaps) == 0 {
			return Snapshot{}, fmt.Errorf("no backups yet: %w", ErrNotFound)
		}
		return snaps[len(snaps)-1], nil
	}
	var found []Snapshot
	for _, s := range snaps {
		if id != "" && strings.HasPrefix(s.ID, id) {
			found = append(found, s)
		}
	}
	switch len(found) {
	case 0:
		return Snapshot{}, fmt.Errorf("backup %q: %w", id, ErrNotFound)
	case 1:
		return found[0], nil
	}
	return Snapshot{}, fmt.Errorf("backup id %q matches %d backups; give more of it: %w", id, len(found), ErrInvalid)
}

// Restore writes snapshot id's tree (only path, relative to its root,
// when path is not empty) under target, keeping the snapshot's layout:
// path lands at target/path.
func (r *Restic) Restore(ctx context.Context, repo Repo, id, path, target string) error {
	args := []string{"restore", id, "--target", target}
	if path != "" {
		args = append(args, "--include", "/"+strings.TrimPrefix(path, "/"))
	} else {
		// (restic takes --include or --exclude, not both.)
		args = append(args, "--exclude", "/"+EmptyMarker)
		// The backup of an empty home restores nothing, and restic then
		// makes no target: the restored home is there, empty. (0700:
		// what restic makes a target with.)
		if err := os.MkdirAll(target, 0o700); err != nil {
			return fmt.Errorf("restic restore: %w", err)
		}
	}
	_, err := r.run(ctx, repo, "", args...)
	return err
}

// Keep is a retention policy; zero fields keep nothing by that rule.
type Keep struct {
	Last    int `json:"last,omitempty"`
	Daily   int `json:"daily,omitempty"`
	Weekly  int `json:"weekly,omitempty"`
	Monthly int `json:"monthly,omitempty"`
}

// Zero reports whether k keeps nothing (so forgetting by it would remove
// everything).
func (k Keep) Zero() bool { return k == Keep{} }

// Forget removes snapshots carrying tags that k does not keep, and prunes
// their data. It returns how many it removed.
func (r *Restic) Forget(ctx context.Context, repo Repo, tags []string, k Keep) (int, error) {
	if k.Zero() {
		return 0, fmt.Errorf("restic forget: a retention policy that keeps nothing: %w", ErrInvalid)
	}
	before, err := r.Snapshots(ctx, repo, tags)
	if err != nil {
		return 0, err
	}
	args := []string{"forget", "--prune", "--tag", strings.Join(tags, ",")}
	for _, f := range []struct {
		flag string
		n    int
	}{{"--keep-last", k.Last}, {"--keep-daily", k.Daily}, {"--keep-weekly", k.Weekly}, {"--keep-monthly", k.Monthly}} {
		if f.n > 0 {
			args = append(args, f.flag, fmt.Sprint(f.n))
		}
	}
	if _, err := r.run(ctx, repo, "", args...); err != nil {
		return 0, err
	}
	after, err := r.Snapshots(ctx, repo, tags)
	if err != nil {
		return 0, err
	}
	return len(before) - len(after), nil
}

// Purge removes every snapshot and prunes all data, so that what is left
// of the repository is its config and key files (which the control plane
// makes unreadable by destroying the password). A local repository is
// removed entirely. It returns how many snapshots it removed; a missing
// repository is nothing to remove.
func (r *Restic) Purge(ctx context.Context, repo Repo) (removed int, gone bool, err error) {
	snaps, err := r.Snapshots(ctx, repo, nil)
	if errors.Is(err, ErrNoRepository) {
		return 0, true, nil
	}
	if err != nil {
		return 0, false, err
	}
	if len(snaps) > 0 {
		args := []string{"forget", "--prune"}
		for _, s := range snaps {
			args = append(args, s.ID)
		}
		if _, err := r.run(ctx, repo, "", args...); err != nil {
			return 0, false, err
		}
	}
	if repo.Kind() == "local" {
		if err := os.RemoveAll(repo.URL); err != nil {
			return len(snaps), false, fmt.Errorf("remove repository %s: %w", repo.URL, err)
		}
		return len(snaps), true, nil
	}
	return len(snaps), false, nil
}
