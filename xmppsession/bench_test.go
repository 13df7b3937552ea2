package xmppsession

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/internal/xmpptest"
)

// BenchmarkPublishNotify measures the end-to-end rate of publish →
// notification → decoded event through a real Prosody (items kept in
// memory, so the server's storage is not what is measured). inflight is
// the number of concurrent publish requests.
func BenchmarkPublishNotify(b *testing.B) {
	srv := xmpptest.Start(b, xmpptest.Prosody, xmpptest.Options{MemoryStorage: true, Admins: []string{"admin@localhost"}})
	srv.Register(b, "admin", password)
	srv.Register(b, "sub", password)

	var received atomic.Int64
	var target atomic.Int64
	allIn := make(chan struct{}, 1)
	sub := startClient(b, srv, "sub", func(cfg *Config) {
		cfg.OnEvent = func(hookctl.Event) {
			if received.Add(1) == target.Load() {
				allIn <- struct{}{}
			}
		}
	})
	admin := startClient(b, srv, "admin")
	ctx := ctxT(b)
	if err := admin.CreateNode(ctx, srv.PubSub, "bench"); err != nil {
		b.Fatal(err)
	}
	if _, err := sub.Subscribe(ctx, srv.PubSub, "bench"); err != nil {
		b.Fatal(err)
	}
	payload := `<entry xmlns="http://www.w3.org/2005/Atom"><title>benchmark item</title><content type="text">` +
		"some content of a typical small post, a few hundred bytes long at most." + `</content></entry>`

	for _, inflight := range []int{1, 16} {
		b.Run(fmt.Sprintf("inflight=%d", inflight), func(b *testing.B) {
			received.Store(0)
			target.Store(int64(b.N))
			var next atomic.Int64
			var wg sync.WaitGroup
			errs := make(chan error, inflight)
			b.ResetTimer()
			start := time.Now()
			for range inflight {
				wg.Go(func() {
					for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
						if _, err := admin.Publish(context.Background(), srv.PubSub, "bench", "", payload); err != nil {
							errs <- err
							return
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			if err := <-errs; err != nil {
				b.Fatal(err)
			}
			select {
			case <-allIn:
			case <-time.After(30 * time.Second):
				b.Fatalf("%d of %d notifications after 30s", received.Load(), b.N)
			}
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "items/s")
		})
	}
}
