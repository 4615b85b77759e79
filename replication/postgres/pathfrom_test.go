package postgres

import (
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/understudy-ha/understudy/internal/cluster"
	"github.com/understudy-ha/understudy/internal/config"
)

// TestPathFrom: the records a rewind keeps aside run from the fork over
// every timeline of the directory's history after it: a minority side's
// former primary wrote on its old timeline after the other side forked,
// then promoted onto a timeline of its own.
func TestPathFrom(t *testing.T) {
	cfg := config.Default().Postgres
	cfg.DataDir = t.TempDir()
	if err := os.MkdirAll(filepath.Join(cfg.DataDir, "pg_wal"), 0o700); err != nil {
		t.Fatal(err)
	}
	// Timeline 102's history: 1 until 0/3000000, 2 until 0/5075DE0.
	hist := "1\t0/3000000\tno recovery target specified\n\n# a comment\n2\t0/5075DE0\tno recovery target specified\n"
	if err := os.WriteFile(filepath.Join(cfg.DataDir, "pg_wal", "00000066.history"), []byte(hist), 0o600); err != nil {
		t.Fatal(err)
	}
	i := NewInstance(cfg, "n1", slog.New(slog.DiscardHandler))
	for _, c := range []struct {
		name string
		tli  uint32
		from cluster.LSN
		want []cluster.WALRange
	}{
		{"forked on the old timeline", 2, 0x5029970, []cluster.WALRange{{Timeline: 2, From: 0x5029970, To: 0x5075DE0}, {Timeline: 102, From: 0x5075DE0}}},
		{"forked on the first", 1, 0x2000000, []cluster.WALRange{{Timeline: 1, From: 0x2000000, To: 0x3000000}, {Timeline: 2, From: 0x3000000, To: 0x5075DE0}, {Timeline: 102, From: 0x5075DE0}}},
		{"forked on its own", 102, 0x5080000, []cluster.WALRange{{Timeline: 102, From: 0x5080000}}},
	} {
		got, err := i.pathFrom(102, c.tli, c.from)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("%s: pathFrom = %+v, %v; want %+v", c.name, got, err, c.want)
		}
	}
	if got, err := i.pathFrom(1, 1, 0x100); err != nil || !slices.Equal(got, []cluster.WALRange{{Timeline: 1, From: 0x100}}) {
		t.Errorf("timeline 1 (no history file): %+v, %v", got, err)
	}
	if _, err := i.pathFrom(7, 2, 0x100); err == nil {
		t.Error("a missing history file: no error")
	}
}
