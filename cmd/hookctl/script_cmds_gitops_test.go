package main

import (
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

// pollTimeout bounds every polling command: generous, since a loaded CI
// machine with -race is slow; a passing script never waits that long.
const pollTimeout = 15 * time.Second

// countFlag parses an optional leading -count=N.
func countFlag(ts *testscript.TestScript, args []string) (int, []string) {
	if len(args) > 0 && strings.HasPrefix(args[0], "-count=") {
		n, err := strconv.Atoi(strings.TrimPrefix(args[0], "-count="))
		if err != nil || n < 0 {
			ts.Fatalf("bad %s", args[0])
		}
		return n, args[1:]
	}
	return -1, args
}

// matches reports whether text matches re (exactly n times when n >= 0).
func matches(re *regexp.Regexp, text string, n int) bool {
	if n >= 0 {
		return len(re.FindAllStringIndex(text, -1)) == n
	}
	return re.MatchString(text)
}

// poll [-count=N] REGEX PROG ARG...: run PROG (e.g. hookctl) as exec
// would, again and again, until its stdout matches REGEX (N times with
// -count), or, negated, until it does not. The last run's stdout and
// stderr stay for the next stdout/stderr checks. Its exit status is
// ignored: `poll '^Plan: 0 to create' hookctl diff -f hooks` waits for a
// watcher to have caught up.
func cmdPoll(ts *testscript.TestScript, neg bool, args []string) {
	n, args := countFlag(ts, args)
	if len(args) < 2 {
		ts.Fatalf("usage: poll [-count=N] REGEX PROG [ARG...]")
	}
	re, err := regexp.Compile("(?m)" + args[0])
	ts.Check(err)
	deadline := time.Now().Add(pollTimeout)
	for {
		_ = ts.Exec(args[1], args[2:]...)
		out := ts.ReadFile("stdout")
		if matches(re, out, n) != neg {
			return
		}
		if time.Now().After(deadline) {
			ts.Fatalf("poll %q: condition not met within %v", args[0], pollTimeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// httpget [-count=N] URL REGEX: GET URL until the body matches REGEX (N
// times with -count), or, negated, until it does not; the last body is
// the command's stdout. Loopback only.
func cmdHTTPGet(ts *testscript.TestScript, neg bool, args []string) {
	n, args := countFlag(ts, args)
	if len(args) != 2 {
		ts.Fatalf("usage: httpget [-count=N] URL REGEX")
	}
	if !strings.HasPrefix(args[0], "http://127.0.0.1:") {
		ts.Fatalf("httpget: %s is not a loopback URL", args[0])
	}
	re, err := regexp.Compile("(?m)" + args[1])
	ts.Check(err)
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(pollTimeout)
	var last string
	for {
		resp, err := client.Get(args[0])
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			last = resp.Status + "\n" + string(b)
			if matches(re, last, n) != neg {
				io.WriteString(ts.Stdout(), last)
				return
			}
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			ts.Fatalf("httpget %s %q: not met within %v; last answer:\n%s", args[0], args[1], pollTimeout, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// freeport VAR: set VAR to a TCP port of 127.0.0.1 that was free a moment
// ago, for --listen.
func cmdFreePort(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: freeport VAR")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	ts.Check(err)
	port := ln.Addr().(*net.TCPAddr).Port
	ts.Check(ln.Close())
	ts.Setenv(args[0], strconv.Itoa(port))
}
