package sshboot

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"github.com/sagemathinc/cocalc-hosts/pkg/errkind"
)

// AgentSource finds the agent binary to install on a host of a given
// platform: this program itself when the platform matches, otherwise a
// release artifact checked against its configured sha256.
type AgentSource struct {
	// Self is this program (os.Executable()), for hosts of its platform.
	Self string
	// SelfPlatform is GOOS/GOARCH of Self (default: this process's).
	SelfPlatform string
	// ReleaseURL locates agents for other platforms: an http(s) or file
	// URL in which {os} and {arch} are replaced, pointing at the raw
	// binary or at a .tar.gz holding a file named cocalc-hosts (as
	// goreleaser archives do).
	ReleaseURL string
	// SHA256 maps a platform ("linux/arm64") to the sha256 of the
	// artifact at its ReleaseURL (from the release's checksums file).
	SHA256 map[string]string
	// CacheDir keeps verified downloads.
	CacheDir string
	// HTTP fetches artifacts (default: http.DefaultClient).
	HTTP *http.Client

	mu      sync.Mutex
	selfBin *Binary
}

// Binary is an agent binary ready to upload.
type Binary struct {
	Path   string
	SHA256 string
	Size   int64
}

// ConfigKey names the config setting that holds platform's checksum.
func ConfigKey(platform string) string {
	return "bootstrap.agent_sha256_" + strings.ReplaceAll(platform, "/", "_")
}

// For returns the agent binary for platform (GOOS/GOARCH).
func (a *AgentSource) For(ctx context.Context, platform string) (Binary, error) {
	self := a.SelfPlatform
	if self == "" {
		self = runtime.GOOS + "/" + runtime.GOARCH
	}
	if platform == self && a.Self != "" {
		return a.self()
	}
	if a.ReleaseURL == "" {
		return Binary{}, errkind.Errorf(errkind.Invalid, "bootstrap agent: the host is %s but this cocalc-hosts is %s, and no agent release is configured for other platforms: set bootstrap.agent_url "+
			"(a URL with {os} and {arch}) and %s (the artifact's sha256)", platform, self, ConfigKey(platform))
	}
	want := strings.ToLower(strings.TrimSpace(a.SHA256[platform]))
	if len(want) != 64 {
		return Binary{}, errkind.Errorf(errkind.Invalid, "bootstrap agent: no sha256 configured for the %s agent: set %s to the artifact's sha256 (from the release's checksums file)", platform, ConfigKey(platform))
	}
	osName, arch, _ := strings.Cut(platform, "/")
	u := strings.NewReplacer("{os}", osName, "{arch}", arch).Replace(a.ReleaseURL)
	return a.fetch(ctx, u, want, platform)
}

func (a *AgentSource) self() (Binary, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.selfBin != nil {
		// Replaced on disk since (an upgrade of the CLI itself)? Hash again.
		if st, err := os.Stat(a.Self); err == nil && st.Size() == a.selfBin.Size {
			return *a.selfBin, nil
		}
	}
	sum, size, err := fileSHA256(a.Self)
	if err != nil {
		return Binary{}, fmt.Errorf("agent binary: %w", err)
	}
	a.selfBin = &Binary{Path: a.Self, SHA256: sum, Size: size}
	return *a.selfBin, nil
}

// fetch downloads u (or reuses the verified copy in the cache), checks
// its sha256 and returns the agent binary in it.
func (a *AgentSource) fetch(ctx context.Context, u, want, platform string) (Binary, error) {
	if a.CacheDir == "" {
		return Binary{}, errors.New("agent download: no cache directory")
	}
	if err := os.MkdirAll(a.CacheDir, 0o700); err != nil {
		return Binary{}, fmt.Errorf("agent download: %w", err)
	}
	bin := filepath.Join(a.CacheDir, "cocalc-hosts-"+want)
	if sum, _, err := fileSHA256(bin + ".artifact"); err == nil && sum == want {
		if b, err := a.binaryFrom(bin, u); err == nil {
			return b, nil
		}
	}
	tmp, err := os.CreateTemp(a.CacheDir, ".download-*")
	if err != nil {
		return Binary{}, fmt.Errorf("agent download: %w", err)
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	if err := a.download(ctx, u, io.MultiWriter(tmp, h)); err != nil {
		tmp.Close()
		return Binary{}, err
	}
	if err := tmp.Close(); err != nil {
		return Binary{}, fmt.Errorf("agent download: %w", err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return Binary{}, errkind.Errorf(errkind.Invalid, "bootstrap agent: the agent artifact %s has sha256 %s, but %s says %s: refusing to install it (a changed or damaged download, or a stale checksum)",
			u, got, ConfigKey(platform), want)
	}
	if err := os.Rename(tmp.Name(), bin+".artifact"); err != nil {
		return Binary{}, fmt.Errorf("agent download: %w", err)
	}
	return a.binaryFrom(bin, u)
}

// binaryFrom returns the binary in the verified artifact bin+".artifact":
// the artifact itself, or the cocalc-hosts file in it if it is a tarball.
func (a *AgentSource) binaryFrom(bin, u string) (Binary, error) {
	art := bin + ".artifact"
	if !strings.HasSuffix(u, ".tar.gz") && !strings.HasSuffix(u, ".tgz") {
		if err := os.Chmod(art, 0o755); err != nil {
			return Binary{}, err
		}
		sum, size, err := fileSHA256(art)
		return Binary{Path: art, SHA256: sum, Size: size}, err
	}
	if sum, size, err := fileSHA256(bin); err == nil {
		return Binary{Path: bin, SHA256: sum, Size: size}, nil
	}
	f, err := os.Open(art)
	if err != nil {
		return Binary{}, err
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return Binary{}, fmt.Errorf("agent artifact %s: %w", u, err)
	}
	tr := tar.NewReader(gz)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return Binary{}, fmt.Errorf("agent artifact %s has no file named cocalc-hosts", u)
		}
		if err != nil {
			return Binary{}, fmt.Errorf("agent artifact %s: %w", u, err)
		}
		if hdr.Typeflag != tar.TypeReg || filepath.Base(hdr.Name) != "cocalc-hosts" {
			continue
		}
		tmp, err := os.CreateTemp(filepath.Dir(bin), ".extract-*")
		if err != nil {
			return Binary{}, err
		}
		defer os.Remove(tmp.Name())
		if _, err := io.Copy(tmp, tr); err != nil {
			tmp.Close()
			return Binary{}, fmt.Errorf("agent artifact %s: %w", u, err)
		}
		if err := tmp.Chmod(0o755); err != nil {
			tmp.Close()
			return Binary{}, err
		}
		if err := tmp.Close(); err != nil {
			return Binary{}, err
		}
		if err := os.Rename(tmp.Name(), bin); err != nil {
			return Binary{}, err
		}
		sum, size, err := fileSHA256(bin)
		return Binary{Path: bin, SHA256: sum, Size: size}, err
	}
}

func (a *AgentSource) download(ctx context.Context, u string, w io.Writer) error {
	pu, err := url.Parse(u)
	if err != nil {
		return errkind.Errorf(errkind.Invalid, "bootstrap agent: bootstrap.agent_url %q: %v", u, err)
	}
	switch pu.Scheme {
	case "file":
		f, err := os.Open(pu.Path)
		if err != nil {
			return errkind.Errorf(errkind.Invalid, "bootstrap agent: agent artifact: %v", err)
		}
		defer f.Close()
		_, err = io.Copy(w, f)
		return err
	case "http", "https":
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return err
		}
		c := a.HTTP
		if c == nil {
			c = http.DefaultClient
		}
		resp, err := c.Do(req)
		if err != nil {
			return errkind.Errorf(errkind.Transient, "bootstrap agent: download %s: %v", u, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			kind := errkind.Invalid
			if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests {
				kind = errkind.Transient
			}
			return errkind.Errorf(kind, "bootstrap agent: download %s: %s", u, resp.Status)
		}
		if _, err := io.Copy(w, resp.Body); err != nil {
			return errkind.Errorf(errkind.Transient, "bootstrap agent: download %s: %v", u, err)
		}
		return nil
	}
	return errkind.Errorf(errkind.Invalid, "bootstrap agent: bootstrap.agent_url %q: use an https:// or file:// URL", u)
}

// Gzipped returns a gzip-compressed copy of bin, kept in CacheDir so that
// uploading the same agent to many hosts compresses it once. Without a
// cache directory it returns "".
func (a *AgentSource) Gzipped(bin Binary) (string, error) {
	if a.CacheDir == "" {
		return "", nil
	}
	path := filepath.Join(a.CacheDir, "cocalc-hosts-"+bin.SHA256+".gz")
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	if err := os.MkdirAll(a.CacheDir, 0o700); err != nil {
		return "", err
	}
	in, err := os.Open(bin.Path)
	if err != nil {
		return "", err
	}
	defer in.Close()
	tmp, err := os.CreateTemp(a.CacheDir, ".gzip-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	zw, _ := gzip.NewWriterLevel(tmp, gzip.BestSpeed)
	_, err = io.Copy(zw, in)
	if err == nil {
		err = zw.Close()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return "", fmt.Errorf("compress agent: %w", err)
	}
	return path, nil
}

func fileSHA256(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}
