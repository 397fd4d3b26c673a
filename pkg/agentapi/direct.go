package agentapi

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
)

// Direct transfers: a volume goes from the source agent straight to the
// destination agent, not through the control plane.
//
//	POST /v1/projects/{id}/transfer/expect   (destination) accept one volume
//	POST /v1/projects/{id}/transfer/push     (source) send one volume there
//
// The control plane makes a random one-time credential and gives it to
// both agents in these request bodies. Expect opens an ephemeral TCP port
// with a TLS certificate made for this transfer and answers with the port
// and the certificate's fingerprint; push connects there, pins that
// fingerprint, writes a DirectHello line and, once the destination has
// compared it (credential in constant time, project, move and volume),
// the stream. The port takes one connection and closes, or closes at the
// expiry. The bytes the source sent come back as PushProgress lines.

// CodeUnreachable is the code of a push that failed before any data went:
// the source could not connect, the certificate did not match, or the
// destination refused the hello. The control plane relays instead.
const CodeUnreachable = "unreachable"

// CodeStalled is the code of a push whose stream made no progress for a
// while (the network between the hosts cut): worth another attempt, which
// relays if the destination still cannot be reached.
const CodeStalled = "stalled"

// Direct transfer limits.
const (
	// CredentialBytes is the least length of a decoded credential.
	CredentialBytes = 32
	// MaxExpectSeconds bounds how long an expected transfer waits.
	MaxExpectSeconds = 600
)

// ExpectRequest asks the destination to accept one volume of project
// {id} from the holder of Credential (base64 of at least CredentialBytes).
// Address is the destination's address as the source dials it: the port
// is opened on that address alone when it is one of the host's own, and
// on every address when it is not (a cloud's public address reaches the
// host through NAT) or is empty.
type ExpectRequest struct {
	Move       string         `json:"move"`
	Method     string         `json:"method"`
	Volume     TransferVolume `json:"volume"`
	Credential string         `json:"credential"`
	TTLSeconds int            `json:"ttl_seconds"`
	Address    string         `json:"address,omitempty"`
}

// ExpectReply is where to send it: Port on the destination, with TLS
// whose certificate has Fingerprint (hex SHA-256 of its DER).
type ExpectReply struct {
	Port        int    `json:"port"`
	Fingerprint string `json:"fingerprint"`
}

// DirectHello is the first line the source writes on the connection.
// Project is the id on the destination (a clone's new id).
type DirectHello struct {
	Project    string `json:"project"`
	Move       string `json:"move"`
	Volume     string `json:"volume"`
	Credential string `json:"credential"`
}

// DirectAnswer is a line the destination writes: once after the hello
// (empty Error: go on) and once after the stream (the bytes received).
type DirectAnswer struct {
	Bytes int64  `json:"bytes,omitempty"`
	Error string `json:"error,omitempty"`
}

// PushRequest asks the source to send one volume of project {id} to an
// expected transfer at Addr (host:port).
type PushRequest struct {
	SendRequest
	Addr        string      `json:"addr"`
	Fingerprint string      `json:"fingerprint"`
	Hello       DirectHello `json:"hello"`
}

// PushProgress is a line of a push's answer: bytes sent so far, and on
// the last line Done with the destination's count or the Error.
type PushProgress struct {
	Bytes int64  `json:"bytes"`
	Done  bool   `json:"done,omitempty"`
	Error string `json:"error,omitempty"`
	// Code is the Error's code, when it has one (CodeStalled).
	Code string `json:"code,omitempty"`
}

// Expect asks the destination host to accept one volume directly.
func (c *Client) Expect(ctx context.Context, id string, req ExpectRequest) (ExpectReply, error) {
	var out ExpectReply
	return out, c.do(ctx, http.MethodPost, transferPath(id)+"/expect", req, &out)
}

// Push has the source host send one volume to an expected transfer;
// progress gets the bytes sent now and then. It returns the bytes the
// destination received. An error with CodeUnreachable means nothing went.
func (c *Client) Push(ctx context.Context, id string, req PushRequest, progress func(sent int64)) (TransferResult, error) {
	resp, err := c.stream(ctx, transferPath(id)+"/push", req, nil)
	if err != nil {
		return TransferResult{}, err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(bufio.NewReader(io.LimitReader(resp.Body, 1<<30)))
	for {
		var p PushProgress
		if err := dec.Decode(&p); err != nil {
			return TransferResult{}, fmt.Errorf("agent push: the answer ended early: %w", err)
		}
		if p.Error != "" {
			if p.Code != "" {
				return TransferResult{Bytes: p.Bytes}, &Error{Status: http.StatusOK, Code: p.Code, Message: "direct transfer: " + p.Error}
			}
			return TransferResult{Bytes: p.Bytes}, fmt.Errorf("direct transfer: %s", p.Error)
		}
		if p.Done {
			return TransferResult{Bytes: p.Bytes}, nil
		}
		if progress != nil {
			progress(p.Bytes)
		}
	}
}
