package runcmd

import (
	"context"
	"strings"
	"testing"
)

func TestOutput(t *testing.T) {
	ctx := context.Background()
	if out, err := Output(ctx, "sh", "-c", "echo hello; echo warn >&2"); err != nil || out != "hello\n" {
		t.Fatalf("Output = %q, %v; want stdout only", out, err)
	}
	// The error names the command and carries what the tool said.
	_, err := Output(ctx, "sh", "-c", "echo no such pool >&2; exit 3")
	if err == nil || !strings.Contains(err.Error(), "sh -c") || !strings.Contains(err.Error(), "exit status 3: no such pool") {
		t.Fatalf("failure: %v", err)
	}
	// A tool that explains itself on stdout is heard too.
	if _, err := Output(ctx, "sh", "-c", "echo quotas not enabled; exit 1"); err == nil || !strings.HasSuffix(err.Error(), ": quotas not enabled") {
		t.Fatalf("stdout message: %v", err)
	}
	// Messages are in the C locale, so callers can match them.
	if out, _ := Output(ctx, "sh", "-c", "echo $LC_ALL"); out != "C\n" {
		t.Fatalf("LC_ALL = %q", out)
	}
}
