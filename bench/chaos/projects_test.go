package main

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"
)

// The project mode of the harness at CI size: a few projects on one local
// host, a few worker kills and one agent kill (the host then stopped and
// started); every check passes once the kills stop. The run cleans up its
// hosts, pools, loop devices, containers and processes itself.
func TestProjectChaos(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root: local hosts mount btrfs pools and run podman")
	}
	o := options{runs: 1, projects: 4, localHosts: 1, workers: 2, concurrency: 2, maxAttempts: 5,
		kills: 3, killEvery: 2 * time.Second, agentKills: 1, agentKillEvery: 4 * time.Second,
		lease: 3 * time.Second, syncEvery: time.Second, deadline: 3 * time.Minute}
	var log strings.Builder
	rep, err := runProjects(context.Background(), o, "../../cmd/cocalc-hosts", &log)
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	out, _ := json.MarshalIndent(rep, "", "  ")
	if !rep.OK {
		t.Fatalf("a check failed:\n%s\n%s", out, log.String())
	}
	t.Logf("%s", out)
}
