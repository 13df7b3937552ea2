package registry

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"hookctl.dev/hookctl"
)

const (
	crashEnv   = "HOOKCTL_REGISTRY_CRASH_DIR"
	crashBatch = 10000
)

func crashHook(batch, i int) hookctl.Hook {
	return hookctl.Hook{
		Key:        hookctl.Key{Profile: "p", Service: "pubsub.example.org", Node: fmt.Sprintf("crash-%03d", batch), Type: hookctl.TypeExec, Arg: fmt.Sprintf("/bin/hook-%05d", i)},
		Persistent: true,
		Owner:      "crash",
		Source:     fmt.Sprintf("hooks.yaml:%d", i+1),
	}
}

// TestCrashChild is the child process of TestCrashAtomicity: it applies
// batches of 10,000 creates one after the other, telling the parent after
// each commit, until it is killed. It does nothing in a normal test run.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashEnv)
	if dir == "" {
		t.Skip("child of TestCrashAtomicity only")
	}
	s, err := Open(dir, Options{})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(3)
	}
	hooks, rev := s.Snapshot()
	start := len(hooks) / crashBatch
	fmt.Println("ready")
	for b := start; b < start+200; b++ {
		batch := hookctl.Batch{Revision: rev, Create: make([]hookctl.Hook, crashBatch)}
		for i := range crashBatch {
			batch.Create[i] = crashHook(b, i)
		}
		fmt.Println("apply", b)
		t0 := time.Now()
		if rev, err = s.Apply(context.Background(), batch); err != nil {
			fmt.Println("error", err)
			os.Exit(3)
		}
		fmt.Println("committed", b, time.Since(t0).Milliseconds())
	}
}

// TestCrashAtomicity SIGKILLs a process at a random moment while it commits
// 10,000-hook batches, then checks that the store opens and holds every
// batch whole or not at all, including every batch reported committed.
func TestCrashAtomicity(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	base := t.TempDir()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	var batchTime time.Duration
	for round := range 5 {
		// A fresh store each round keeps Open cheap (under -race too); the
		// first round lets a batch commit first, so a later one dies on top
		// of committed data.
		dir := filepath.Join(base, fmt.Sprint(round))
		reported := -1 // highest batch this child said it committed
		cmd := exec.Command(exe, "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashEnv+"="+dir)
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		ready := make(chan struct{})
		applying := make(chan struct{}, 1000)
		committed := make(chan time.Duration, 1000)
		var mu sync.Mutex
		var lines []string
		done := make(chan struct{})
		go func() {
			defer close(done)
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				line := sc.Text()
				mu.Lock()
				lines = append(lines, line)
				mu.Unlock()
				if line == "ready" {
					close(ready)
				}
				if strings.HasPrefix(line, "apply ") {
					applying <- struct{}{}
				}
				var b, ms int
				if _, err := fmt.Sscanf(line, "committed %d %d", &b, &ms); err == nil {
					mu.Lock()
					reported = max(reported, b)
					mu.Unlock()
					committed <- time.Duration(ms) * time.Millisecond
				}
			}
		}()
		select {
		case <-ready:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("round %d: child not ready; output %q", round, lines)
		}
		var after string
		if round == 0 {
			// Let one batch through, to have data and to learn how long a
			// batch takes here (ten times longer under -race).
			select {
			case batchTime = <-committed:
			case <-time.After(60 * time.Second):
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("round %d: no batch committed in 60s; output %q", round, lines)
			}
		}
		// Kill at a random moment of an Apply (validation, encoding, bbolt
		// writes, fsync), now and then just after it.
		waitFor := func(what string, ch <-chan struct{}) {
			select {
			case <-ch:
			case <-time.After(60 * time.Second):
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("round %d: child never started %s; output %q", round, what, lines)
			}
		}
		for range len(applying) { // drain starts already seen
			<-applying
		}
		waitFor("a batch", applying)
		after = "Apply started"
		delay := time.Duration(rng.Int64N(int64(batchTime) * 11 / 10))
		time.Sleep(delay)
		if err := cmd.Process.Kill(); err != nil {
			t.Fatalf("round %d: kill: %v", round, err)
		}
		<-done
		cmd.Wait()
		mu.Lock()
		for _, l := range lines {
			if strings.HasPrefix(l, "error") {
				t.Fatalf("round %d: child: %s", round, l)
			}
		}
		mu.Unlock()

		s, err := Open(dir, Options{})
		if err != nil {
			t.Fatalf("round %d: Open after kill: %v", round, err)
		}
		hooks, rev := s.Snapshot()
		count := map[string]int{}
		for _, h := range hooks {
			count[h.Node]++
		}
		for node, n := range count {
			if n != crashBatch {
				t.Errorf("round %d: batch %s holds %d hooks, want all %d or none", round, node, n, crashBatch)
			}
		}
		// Batches are contiguous from 0, and every reported one is there.
		for b := range len(count) {
			if count[fmt.Sprintf("crash-%03d", b)] == 0 {
				t.Errorf("round %d: batch %d missing while %d batches are stored", round, b, len(count))
			}
		}
		if len(count) <= reported {
			t.Errorf("round %d: child reported batch %d committed, store holds %d batches", round, reported, len(count))
		}
		t.Logf("round %d: killed %v after %s (batch takes ~%v); child reported %d batches, store holds %d, revision %d", round, delay.Round(time.Millisecond), after, batchTime, reported+1, len(count), rev)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
