package local

import (
	"testing"
	"time"

	"github.com/sagemathinc/cocalc-hosts/pkg/provider"
	"github.com/sagemathinc/cocalc-hosts/pkg/provider/providertest"
)

func TestContract(t *testing.T) {
	needRoot(t)
	state := testStateDir(t)
	providertest.RunWithOptions(t, providertest.Options{
		Deployment: "contract",
		Spec:       provider.CreateSpec{Region: Region, DiskGB: MinDiskGB},
		ResizeToGB: MinDiskGB + 1,
		Timeout:    time.Minute,
	}, func(t *testing.T) provider.Provider {
		return newProvider(t, state, "contract", nil)
	})
}

func TestContractDirectory(t *testing.T) {
	state := testStateDir(t)
	providertest.RunWithOptions(t, providertest.Options{
		Deployment: "contract",
		Spec:       provider.CreateSpec{Region: Region},
		Timeout:    time.Minute,
	}, func(t *testing.T) provider.Provider {
		return newProvider(t, state, "contract", map[string]string{OptionStorage: "directory"})
	})
}
