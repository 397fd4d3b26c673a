package agent

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"reflect"
	"testing"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/agentapi"
)

// requestBodies are the types of every request body the agent decodes
// (with decode, or the access list's own strict decoder).
func requestBodies() []any {
	return []any{
		&agentapi.CreateProjectRequest{}, &agentapi.StartProjectRequest{}, &agentapi.QuotaRequest{},
		&agentapi.SnapshotRequest{}, &agentapi.RestoreRequest{}, &agentapi.IdlePolicy{},
		&agentapi.PullImageRequest{}, &agentapi.BuildImageRequest{}, &agentapi.ExecRequest{},
		&agentapi.SendRequest{}, &agentapi.TransferSnapshotRequest{}, &agentapi.CommitTransferRequest{},
		&agentapi.FreezeRequest{}, &agentapi.BackupConfig{}, &agentapi.BackupRestoreRequest{},
		&agentapi.BackupForgetRequest{}, &agentapi.AccessList{},
	}
}

// Any request body is decoded or refused as invalid, never a panic; what
// decode accepts survives a round trip; and an access list is indexed or
// refused with an error.
func FuzzDecodeRequests(f *testing.F) {
	f.Add(uint8(0), []byte(`{"image":"ubuntu","uid":2001}`))
	f.Add(uint8(2), []byte(`{"disk_gb":3}`))
	f.Add(uint8(16), []byte(`{"host_id":"h","version":1,"projects":[{"project_id":"p","keys":["ssh-ed25519 AAAA"]}]}`))
	f.Add(uint8(5), []byte(`{"idle_timeout":"1h"`))
	f.Add(uint8(9), []byte(`{"unknown":1}`))
	f.Add(uint8(1), []byte{})
	types := requestBodies()
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		proto := types[int(which)%len(types)]
		v := reflect.New(reflect.TypeOf(proto).Elem()).Interface()
		r := httptest.NewRequest("POST", "/", bytes.NewReader(body))
		if err := decode(r, v); err != nil {
			if code := codeOf(err); code != agentapi.CodeInvalid {
				t.Fatalf("%T refused with code %q, want %q: %v", v, code, agentapi.CodeInvalid, err)
			}
			return
		}
		raw, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("%T accepted from %q does not encode: %v", v, body, err)
		}
		again := reflect.New(reflect.TypeOf(proto).Elem()).Interface()
		if err := decode(httptest.NewRequest("POST", "/", bytes.NewReader(raw)), again); err != nil {
			t.Fatalf("%T accepted from %q, but its encoding %s is refused: %v", v, body, raw, err)
		}
		if l, ok := v.(*agentapi.AccessList); ok {
			c := newAccessCache(l.HostID, "", func() time.Time { return time.Unix(1e9, 0) })
			_, _ = c.index(*l, c.now()) // an error is a refusal; a panic is the bug
		}
	})
}
