package services

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// UnitDir is where InstallUnit writes units on a host: the administrator's
// directory, which a package never overwrites and systemd reads first.
const UnitDir = "/etc/systemd/system"

// SystemdBooted reports whether systemd is this host's init, the way
// sd_booted(3) tells: it creates /run/systemd/system early at boot.
func SystemdBooted() bool {
	fi, err := os.Stat("/run/systemd/system")
	return err == nil && fi.IsDir()
}

// InstallUnit writes the unit name (such as "understudy-consul.service")
// into dir, has systemd read it and enables it, so that systemd starts it
// at every boot; Start starts it now. A unit already there is replaced: the
// command it runs may have changed.
func (m *Manager) InstallUnit(ctx context.Context, dir, name string, content []byte) error {
	c, err := m.conn(ctx)
	if err != nil {
		return fmt.Errorf("install unit %s: %w", name, err)
	}
	path := filepath.Join(dir, name)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, content, 0o644); err != nil {
		return fmt.Errorf("install unit %s: %w", name, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("install unit %s: %w", name, err)
	}
	// Enabled, then reloaded, as systemctl enable does: the reload reads
	// the new file and the links enabling made in one go.
	if _, _, err := c.EnableUnitFilesContext(ctx, []string{name}, false, true); err != nil {
		return fmt.Errorf("install unit %s: enable: %w", name, err)
	}
	if err := c.ReloadContext(ctx); err != nil {
		return fmt.Errorf("install unit %s: systemd daemon-reload: %w", name, err)
	}
	return nil
}

// RemoveUnit undoes InstallUnit: it stops the unit, disables it and removes
// its file from dir. A unit that is not there is no error.
func (m *Manager) RemoveUnit(ctx context.Context, dir, name string) error {
	path := filepath.Join(dir, name)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	c, err := m.conn(ctx)
	if err != nil {
		return fmt.Errorf("remove unit %s: %w", name, err)
	}
	if err := m.unitJob(ctx, name, "stop"); err != nil {
		return fmt.Errorf("remove unit %s: %w", name, err)
	}
	if _, err := c.DisableUnitFilesContext(ctx, []string{name}, false); err != nil {
		return fmt.Errorf("remove unit %s: disable: %w", name, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove unit %s: %w", name, err)
	}
	if err := c.ReloadContext(ctx); err != nil {
		return fmt.Errorf("remove unit %s: systemd daemon-reload: %w", name, err)
	}
	// A unit that failed stays listed as failed until reset, although its
	// file is gone.
	_ = c.ResetFailedUnitContext(ctx, name)
	return nil
}
