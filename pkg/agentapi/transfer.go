package agentapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
)

// The transfer API moves a project's files between hosts (moves and
// clones). The source sends volumes as streams (btrfs send, or tar where a
// side is a plain directory), the destination receives them into staging
// and commits them; nothing outside staging changes before the commit, so
// dropping the transfer on both sides undoes it.
//
//	GET    /v1/projects/{id}/transfer            volumes held, with identities
//	POST   /v1/projects/{id}/transfer/snapshot   a transfer snapshot of the live home
//	POST   /v1/projects/{id}/transfer/send       the stream of one volume
//	POST   /v1/projects/{id}/transfer/receive    receive a stream into staging
//	POST   /v1/projects/{id}/transfer/expect     accept one volume directly (direct.go)
//	POST   /v1/projects/{id}/transfer/push       send one volume directly (direct.go)
//	POST   /v1/projects/{id}/transfer/commit     make what was received the project
//	DELETE /v1/projects/{id}/transfer            drop all transfer state
//	DELETE /v1/projects/{id}/transfer/{name}     drop one transfer volume
//	POST   /v1/projects/{id}/freeze              make the home read-only (a moved-away copy)
const transferSuffix = "/transfer"

// Transfer methods.
const (
	TransferBtrfs = "btrfs" // btrfs send/receive: snapshots travel too
	TransferTar   = "tar"   // a plain-directory side: the home only
)

// TransferVolume is a read-only subvolume of a transfer (see
// storage.Volume): Identity is the same for a snapshot and its copies.
type TransferVolume struct {
	Name      string `json:"name"`
	Identity  string `json:"identity"`
	CreatedAt string `json:"created_at"`
	// Transfer marks a transfer snapshot of the live home; Staged one
	// received and not yet committed.
	Transfer bool `json:"transfer,omitempty"`
	Staged   bool `json:"staged,omitempty"`
}

// TransferVolumes is what a host holds of a project for a transfer.
type TransferVolumes struct {
	// Kind is the pool's kind (StorageBtrfs or StorageDirectory).
	Kind    string           `json:"kind"`
	Exists  bool             `json:"exists"`
	Volumes []TransferVolume `json:"volumes"`
}

// TransferSnapshotRequest asks for a transfer snapshot named by Tag.
type TransferSnapshotRequest struct {
	Tag string `json:"tag"`
}

// SendRequest asks for the stream of one volume.
type SendRequest struct {
	Method string `json:"method"`
	// Name is a snapshot or transfer snapshot; for tar, "" sends the
	// live home (of a stopped project).
	Name   string `json:"name"`
	Parent string `json:"parent,omitempty"`
}

// TransferResult says how many bytes crossed.
type TransferResult struct {
	Bytes int64 `json:"bytes"`
}

// CommitTransferRequest makes what was received the project.
type CommitTransferRequest struct {
	Home       string   `json:"home"`
	Snapshots  []string `json:"snapshots"`
	QuotaBytes int64    `json:"quota_bytes"`
}

// SendErrorTrailer carries an error that happened after a send's stream
// began; a stream whose trailer holds one is incomplete.
const SendErrorTrailer = "X-Send-Error"

func transferPath(id string) string { return ProjectsPath + "/" + url.PathEscape(id) + transferSuffix }

// TransferVolumes asks what the host holds of project id.
func (c *Client) TransferVolumes(ctx context.Context, id string) (TransferVolumes, error) {
	var out TransferVolumes
	return out, c.do(ctx, http.MethodGet, transferPath(id), nil, &out)
}

// TransferSnapshot makes a read-only snapshot of project id's live home.
func (c *Client) TransferSnapshot(ctx context.Context, id, tag string) (TransferVolume, error) {
	var out TransferVolume
	return out, c.do(ctx, http.MethodPost, transferPath(id)+"/snapshot", TransferSnapshotRequest{Tag: tag}, &out)
}

// Send opens the stream of one volume. The caller reads it to the end,
// closes it, and then calls the returned check, which reports an error the
// source met after the stream began.
func (c *Client) Send(ctx context.Context, id string, req SendRequest) (io.ReadCloser, func() error, error) {
	resp, err := c.stream(ctx, transferPath(id)+"/send", req, nil)
	if err != nil {
		return nil, nil, err
	}
	check := func() error {
		if msg := resp.Trailer.Get(SendErrorTrailer); msg != "" {
			return fmt.Errorf("source: %s", msg)
		}
		return nil
	}
	return resp.Body, check, nil
}

// Receive feeds a stream into the host's staging for project id: want is
// the volume the stream holds (its name and identity; ignored for tar).
func (c *Client) Receive(ctx context.Context, id, method string, want TransferVolume, r io.Reader) (TransferResult, error) {
	q := url.Values{"method": {method}, "name": {want.Name}, "identity": {want.Identity}}
	resp, err := c.stream(ctx, transferPath(id)+"/receive?"+q.Encode(), nil, r)
	if err != nil {
		return TransferResult{}, err
	}
	defer resp.Body.Close()
	var out TransferResult
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&out); err != nil {
		return out, fmt.Errorf("agent receive: decode: %w", err)
	}
	return out, nil
}

// CommitTransfer makes what was received project id's. What it was made
// from stays in the host's transfer area until DropTransfer.
func (c *Client) CommitTransfer(ctx context.Context, id string, req CommitTransferRequest) error {
	return c.do(ctx, http.MethodPost, transferPath(id)+"/commit", req, nil)
}

// DropTransfer removes all transfer state of project id on the host.
func (c *Client) DropTransfer(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, transferPath(id), nil, nil)
}

// DropTransferVolume removes one transfer volume of project id.
func (c *Client) DropTransferVolume(ctx context.Context, id, name string) error {
	return c.do(ctx, http.MethodDelete, transferPath(id)+"/"+url.PathEscape(name), nil, nil)
}

// Freeze makes project id's home read-only: the copy a move left behind.
func (c *Client) Freeze(ctx context.Context, id string, frozen bool) error {
	return c.do(ctx, http.MethodPost, ProjectsPath+"/"+url.PathEscape(id)+"/freeze", FreezeRequest{Frozen: frozen}, nil)
}

// FreezeRequest sets or clears a home's read-only flag.
type FreezeRequest struct {
	Frozen bool `json:"frozen"`
}

// stream makes a POST whose request body (JSON of in, or raw) or answer
// is a stream; an error reply is returned as *Error.
func (c *Client) stream(ctx context.Context, path string, in any, raw io.Reader) (*http.Response, error) {
	var body io.Reader = raw
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("agent POST %s: %w", path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://agent"+path, body)
	if err != nil {
		return nil, fmt.Errorf("agent POST %s: %w", path, err)
	}
	if raw != nil {
		req.Header.Set("Content-Type", "application/octet-stream")
		req.ContentLength = -1
	}
	resp, err := c.longHTTP().Do(req)
	if err != nil {
		return nil, fmt.Errorf("agent POST %s: %w", path, err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		return nil, readError(resp)
	}
	return resp, nil
}
