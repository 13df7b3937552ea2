package daemon

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"hookctl.dev/hookctl"
)

// BenchmarkClusterThroughput: 30 profiles (30 accounts), one expr hook
// each on its own node; one op publishes 100 items to every node (3,000
// items, 8 publishes in flight) and waits until every item has run, on 1
// replica or on 3 sharing the profiles. Reports items/s and how the
// profiles were spread.
//
//	go test -run '^$' -bench ClusterThroughput -benchtime 3x ./daemon
func BenchmarkClusterThroughput(b *testing.B) {
	const profiles, perNode = 30, 100
	for _, replicas := range []int{1, 3} {
		b.Run(fmt.Sprintf("replicas=%d", replicas), func(b *testing.B) {
			benchCluster(b, replicas, profiles, perNode)
		})
	}
}

func benchCluster(b *testing.B, replicas, profiles, perNode int) {
	c := newClusterRig(b, perNode*(b.N+1))
	c.profiles = map[string]string{}
	for i := range profiles {
		user := fmt.Sprintf("bot%02d", i)
		c.srv.Register(b, user, "pw")
		c.profiles[fmt.Sprintf("p%02d", i)] = user
		createNode(b, c.srv, "pub", fmt.Sprintf("n%02d", i), 2*perNode*(b.N+1))
	}
	var rs []*replica
	for i := range replicas {
		rs = append(rs, c.start(fmt.Sprintf("r%d", i+1)))
	}
	ctx := context.Background()
	for i := range profiles {
		h := hookctl.Hook{Key: hookctl.Key{Profile: fmt.Sprintf("p%02d", i), Service: c.srv.PubSub, Node: fmt.Sprintf("n%02d", i), Type: hookctl.TypeExpr, Arg: `event.item_id != ""`}, Persistent: true}
		if _, err := rs[0].client.Create(ctx, h); err != nil {
			b.Fatal(err)
		}
	}
	spread := waitSpread(b, rs, profiles)
	pub := newPublisher(b, c.srv, "pub")
	b.ResetTimer()
	start := time.Now()
	for round := range b.N {
		publishRound(b, pub, profiles, perNode, round)
		waitOK(b, rs, (round+1)*profiles*perNode)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N*profiles*perNode)/elapsed.Seconds(), "items/s")
	b.Logf("%d replicas, profiles held: %v", replicas, spread)
}

// waitSpread waits until every profile is held with its session connected
// and subscribed, the same way for two seconds (replicas that joined late
// have taken their share), and returns how many each replica holds.
func waitSpread(b *testing.B, rs []*replica, profiles int) map[string]int {
	deadline := time.Now().Add(90 * time.Second)
	var last string
	var since time.Time
	for time.Now().Before(deadline) {
		held, ready := map[string]int{}, 0
		for _, r := range rs {
			st, err := r.status()
			if err != nil {
				continue
			}
			for _, p := range st.Profiles {
				if p.State == "connected" && p.Subscriptions > 0 {
					held[r.name]++
					ready++
				}
			}
		}
		if now := fmt.Sprint(held); ready != profiles || now != last {
			last, since = now, time.Now()
		} else if time.Since(since) > 2*time.Second {
			return held
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.Fatal("profiles not all connected, subscribed and settled within 90s")
	return nil
}

func publishRound(b *testing.B, pub *publisher, profiles, perNode, round int) {
	work := make(chan [2]int)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for w := range work {
				id := fmt.Sprintf("r%d-%d", round, w[1])
				if !pub.publish(fmt.Sprintf("n%02d", w[0]), id, 20*time.Second) {
					b.Errorf("publish %s: %v", id, pub.lastErr)
				}
			}
		}()
	}
	for i := range perNode {
		for p := range profiles {
			work <- [2]int{p, i}
		}
	}
	close(work)
	wg.Wait()
}

// waitOK waits until the replicas together recorded want ok runs.
func waitOK(b *testing.B, rs []*replica, want int) {
	deadline := time.Now().Add(120 * time.Second)
	for {
		n := 0
		for _, r := range rs {
			for _, run := range runsOf(b, r) {
				if run.Outcome == "ok" {
					n++
				}
			}
		}
		if n >= want {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d runs after 120s", n, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
