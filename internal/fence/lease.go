// Package fence is what stops an active node's PostgreSQL taking writes when
// the node's hold on the leader lock can no longer be vouched for: the lease
// the handler-runner and the watchdog share, the watchdog's loop, and the
// quickest way to make a postmaster refuse writes. The timing and why it is
// safe are config.Fencing's documentation.
package fence

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Mono is a reading of CLOCK_MONOTONIC in nanoseconds. On Linux that clock
// is one for the whole host, so two processes can compare their readings;
// it never jumps with the wall clock.
type Mono int64

// Now reads CLOCK_MONOTONIC.
func Now() Mono {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		// CLOCK_MONOTONIC exists on every Linux understudy runs on.
		panic(fmt.Sprintf("fence: clock_gettime(CLOCK_MONOTONIC): %v", err))
	}
	return Mono(ts.Nano())
}

// Add returns m + d.
func (m Mono) Add(d time.Duration) Mono { return m + Mono(d) }

// Sub returns m - o.
func (m Mono) Sub(o Mono) time.Duration { return time.Duration(m - o) }

// The lease file is one page, memory-mapped by both processes, of 64-bit
// words read and written atomically: no system call per renewal, and no
// torn reads.
const (
	wordDeadline  = iota // until when this node may take writes; 0: not active
	wordWatchdog         // the watchdog's last poll
	wordHandler          // the handler-runner's last sign of life
	wordFencedFor        // the deadline the watchdog last fenced for
	wordFencedAt         // when it did
	words
	magic    = 0x756e64657273_01 // "unders", version 1, in the page's last word
	pageSize = 4096
)

// Lease is the active's lease as both processes see it.
type Lease struct {
	path string
	f    *os.File
	mem  []byte
}

// OpenLease maps the lease file at path, creating it (0600) when it does
// not exist. A file of another size or kind is an error that names it.
func OpenLease(path string) (*Lease, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lease file: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open lease file: %w", err)
	}
	fresh := st.Size() == 0
	switch {
	case fresh:
		if err := f.Truncate(pageSize); err != nil {
			f.Close()
			return nil, fmt.Errorf("size lease file %s: %w", path, err)
		}
	case st.Size() != pageSize:
		f.Close()
		return nil, fmt.Errorf("lease file %s is %d bytes, not %d: not understudy's; remove it while the handler-runner is stopped", path, st.Size(), pageSize)
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, pageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("map lease file %s: %w", path, err)
	}
	l := &Lease{path: path, f: f, mem: mem}
	m := l.word(pageSize/8 - 1)
	if fresh {
		atomic.StoreInt64(m, magic)
	} else if atomic.LoadInt64(m) != magic {
		l.Close()
		return nil, fmt.Errorf("lease file %s is not understudy's (wrong magic); remove it while the handler-runner is stopped", path)
	}
	return l, nil
}

// Close unmaps the file.
func (l *Lease) Close() error {
	err := unix.Munmap(l.mem)
	return errors.Join(err, l.f.Close())
}

// Path is where the lease file is.
func (l *Lease) Path() string { return l.path }

func (l *Lease) word(i int) *int64 {
	// The mapping is page-aligned, so every word is 8-byte aligned: atomic
	// on every architecture Go supports.
	return (*int64)(unsafe.Pointer(&l.mem[i*8]))
}

func (l *Lease) load(i int) Mono     { return Mono(atomic.LoadInt64(l.word(i))) }
func (l *Lease) store(i int, v Mono) { atomic.StoreInt64(l.word(i), int64(v)) }

// Arm sets the end of the lease: the watchdog stops PostgreSQL once the
// clock passes it. The handler-runner arms before it promotes and extends
// after every renewal Consul commits.
func (l *Lease) Arm(until Mono) {
	if until == 0 {
		until = 1
	}
	l.store(wordDeadline, until)
	l.store(wordHandler, Now())
}

// Disarm ends the lease: this node takes no writes and the watchdog has
// nothing to watch. Only once PostgreSQL is stopped or a standby.
func (l *Lease) Disarm() {
	l.store(wordDeadline, 0)
	l.store(wordHandler, Now())
}

// Deadline is the end of the lease, 0 when disarmed.
func (l *Lease) Deadline() Mono { return l.load(wordDeadline) }

// HandlerBeat records that the handler-runner lives.
func (l *Lease) HandlerBeat() { l.store(wordHandler, Now()) }

// HandlerSeen is the handler-runner's last sign of life.
func (l *Lease) HandlerSeen() Mono { return l.load(wordHandler) }

// WatchdogSeen is the watchdog's last poll.
func (l *Lease) WatchdogSeen() Mono { return l.load(wordWatchdog) }

// Fenced says when the watchdog last stopped PostgreSQL and for which
// deadline; 0 when it never did.
func (l *Lease) Fenced() (deadline, at Mono) { return l.load(wordFencedFor), l.load(wordFencedAt) }

// Snapshot renders the lease for logs and errors.
func (l *Lease) Snapshot() string {
	now := Now()
	d := l.Deadline()
	state := "disarmed"
	if d != 0 {
		state = fmt.Sprintf("armed, ends in %v", d.Sub(now).Round(time.Millisecond))
	}
	return fmt.Sprintf("%s; watchdog polled %v ago; handler-runner seen %v ago", state,
		now.Sub(l.WatchdogSeen()).Round(time.Millisecond), now.Sub(l.HandlerSeen()).Round(time.Millisecond))
}
