package agent

import (
	"fmt"
	"time"
)

// idleCheck is how often project activity is sampled.
func (c Config) idleCheck() (time.Duration, error) {
	if c.IdleCheckInterval == "" {
		return defaultIdleCheck, nil
	}
	d, err := time.ParseDuration(c.IdleCheckInterval)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("idle_check_interval %q: want a positive duration such as 30s", c.IdleCheckInterval)
	}
	return d, nil
}

// snapshotInterval is how often active projects get a scheduled snapshot;
// 0 turns the schedule off.
func (c Config) snapshotInterval() (time.Duration, error) {
	if c.SnapshotInterval == "" {
		return defaultSnapshotInterval, nil
	}
	d, err := time.ParseDuration(c.SnapshotInterval)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("snapshot_interval %q: want a duration such as 1h, or 0 to turn scheduled snapshots off", c.SnapshotInterval)
	}
	return d, nil
}

// validateProjects checks the project runtime settings.
func (c Config) validateProjects() error {
	if _, err := c.idleCheck(); err != nil {
		return err
	}
	if _, err := c.snapshotInterval(); err != nil {
		return err
	}
	if err := c.Podman.Validate(); err != nil {
		return err
	}
	return nil
}
