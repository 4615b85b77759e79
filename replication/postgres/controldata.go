package postgres

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/understudy-ha/understudy/internal/cluster"
)

// ControlData is what pg_controldata reads from global/pg_control. It needs
// no running server, which is what the handler-runner needs to place a
// stopped node: which cluster, which timeline, how far.
type ControlData struct {
	// SystemIdentifier is the same on every member cloned from one initdb;
	// a data directory with another one is of another cluster.
	SystemIdentifier uint64
	// State is "in production" (a primary, or one that crashed as a
	// primary), "shut down" (a primary stopped cleanly), "shut down in
	// recovery" (a standby stopped cleanly), "in archive recovery" (a
	// standby, running or crashed), "in crash recovery", ...
	State string
	// Timeline is the latest checkpoint's TimeLineID. It lags behind a
	// promotion until the next checkpoint.
	Timeline uint32
	// CheckpointLSN is the latest checkpoint's location.
	CheckpointLSN cluster.LSN
	// MinRecoveryLSN and MinRecoveryTimeline are how far a standby (or a
	// rewound directory) must replay before it is consistent; 0 when
	// nothing is required.
	MinRecoveryLSN      cluster.LSN
	MinRecoveryTimeline uint32
	// DataChecksums and WALLogHints: either lets pg_rewind work.
	DataChecksums bool
	WALLogHints   bool
	// WALSegmentSize is the size of a WAL segment file (16 MB unless
	// initdb was told otherwise); 0 when pg_controldata did not say.
	WALSegmentSize uint64
	// PrimarySettings are the values of StandbyAtLeastPrimary the primary
	// ran with, by parameter name, as this data directory last learned
	// them (a standby, from the WAL it replayed): a standby started with
	// less refuses to start. Those pg_controldata did not print are absent.
	PrimarySettings map[string]int64
}

// controlSettings are pg_controldata's lines of StandbyAtLeastPrimary.
var controlSettings = map[string]string{
	"max_connections setting":      "max_connections",
	"max_worker_processes setting": "max_worker_processes",
	"max_wal_senders setting":      "max_wal_senders",
	"max_prepared_xacts setting":   "max_prepared_transactions",
	"max_locks_per_xact setting":   "max_locks_per_transaction",
}

// Clean says whether the last stop wrote a shutdown checkpoint.
func (c ControlData) Clean() bool {
	return c.State == "shut down" || c.State == "shut down in recovery"
}

// ControlData runs pg_controldata on the data directory; it works whether the
// server runs or not.
func (i *Instance) ControlData(ctx context.Context) (ControlData, error) {
	return i.controlData(ctx, i.dataDir)
}

func (i *Instance) controlData(ctx context.Context, dir string) (ControlData, error) {
	u, err := lookupOSUser(i.cfg.OSUser)
	if err != nil {
		return ControlData{}, err
	}
	out, err := i.run(ctx, u, "pg_controldata", "-D", dir)
	if err != nil {
		return ControlData{}, fmt.Errorf("read control data of %s: %w", dir, err)
	}
	cd, err := parseControlData(out)
	if err != nil {
		return ControlData{}, fmt.Errorf("read control data of %s: %w", dir, err)
	}
	return cd, nil
}

// The lines of pg_controldata's output (LC_ALL=C) that ControlData reads.
const (
	cdSystemID    = "Database system identifier"
	cdState       = "Database cluster state"
	cdCheckpoint  = "Latest checkpoint location"
	cdTimeline    = "Latest checkpoint's TimeLineID"
	cdMinRecovery = "Minimum recovery ending location"
	cdMinRecTLI   = "Min recovery ending loc's timeline"
	cdChecksums   = "Data page checksum version"
	cdWALLogHints = "wal_log_hints setting"
	cdSegmentSize = "Bytes per WAL segment"
)

// parseControlData reads pg_controldata's "key: value" lines. The system
// identifier, state, checkpoint location and timeline must be there; the
// other fields are zero when missing.
func parseControlData(out string) (ControlData, error) {
	fields := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			fields[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	var cd ControlData
	required := func(key string) (string, error) {
		v, ok := fields[key]
		if !ok || v == "" {
			return "", fmt.Errorf("pg_controldata printed no %q", key)
		}
		return v, nil
	}
	v, err := required(cdSystemID)
	if err == nil {
		cd.SystemIdentifier, err = strconv.ParseUint(v, 10, 64)
	}
	if err != nil {
		return ControlData{}, fmt.Errorf("%s: %w", cdSystemID, err)
	}
	if cd.State, err = required(cdState); err != nil {
		return ControlData{}, err
	}
	if v, err = required(cdCheckpoint); err == nil {
		cd.CheckpointLSN, err = cluster.ParseLSN(v)
	}
	if err != nil {
		return ControlData{}, fmt.Errorf("%s: %w", cdCheckpoint, err)
	}
	if v, err = required(cdTimeline); err == nil {
		cd.Timeline, err = parseTimeline(v)
	}
	if err != nil {
		return ControlData{}, fmt.Errorf("%s: %w", cdTimeline, err)
	}
	if v, ok := fields[cdMinRecovery]; ok {
		if cd.MinRecoveryLSN, err = cluster.ParseLSN(v); err != nil {
			return ControlData{}, fmt.Errorf("%s: %w", cdMinRecovery, err)
		}
	}
	if v, ok := fields[cdMinRecTLI]; ok {
		if cd.MinRecoveryTimeline, err = parseTimeline(v); err != nil {
			return ControlData{}, fmt.Errorf("%s: %w", cdMinRecTLI, err)
		}
	}
	cd.DataChecksums = fields[cdChecksums] != "" && fields[cdChecksums] != "0"
	cd.WALLogHints = fields[cdWALLogHints] == "on"
	if v, ok := fields[cdSegmentSize]; ok {
		if cd.WALSegmentSize, err = strconv.ParseUint(v, 10, 64); err != nil {
			return ControlData{}, fmt.Errorf("%s: %w", cdSegmentSize, err)
		}
	}
	for line, name := range controlSettings {
		if v, ok := fields[line]; ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return ControlData{}, fmt.Errorf("%s: %w", line, err)
			}
			if cd.PrimarySettings == nil {
				cd.PrimarySettings = map[string]int64{}
			}
			cd.PrimarySettings[name] = n
		}
	}
	return cd, nil
}

func parseTimeline(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	return uint32(n), err
}
