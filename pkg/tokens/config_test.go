package tokens

import (
	"testing"

	"github.com/sagemathinc/cocalc-hosts/pkg/config"
)

// The settings check token lifetimes against the same bound that
// signing enforces, so a setting that loads never fails when used.
func TestConfigBoundIsMaxTTL(t *testing.T) {
	if config.MaxTokenLife != MaxTTL {
		t.Fatalf("config.MaxTokenLife = %s, tokens.MaxTTL = %s", config.MaxTokenLife, MaxTTL)
	}
}
