package main

import (
	"bufio"
	"io"
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestReadmeCommandLines parses every `hookctl …` line of the README's sh
// blocks with the CLI itself: the command must exist and take the flags
// and the number of arguments shown, so the README cannot drift from the
// CLI. (What the commands do is tested by the scripts in testdata/script;
// `make` lines must name a target of the Makefile.)
func TestReadmeCommandLines(t *testing.T) {
	lines := readmeShellLines(t)
	makefile, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, line := range lines {
		words := shellWords(line)
		switch {
		case len(words) == 0:
		case words[0] == "make":
			for _, target := range words[1:] {
				if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(target) + `:`).Match(makefile) {
					t.Errorf("README: %q: the Makefile has no target %s", line, target)
				}
			}
		case words[0] == "hookctl":
			checked++
			checkCommandLine(t, line, words[1:])
		}
	}
	if checked < 20 {
		t.Fatalf("checked only %d hookctl lines of the README", checked)
	}
}

func checkCommandLine(t *testing.T, line string, args []string) {
	t.Helper()
	root := newRootCmd(strings.NewReader(""), io.Discard, io.Discard)
	cmd, rest, err := root.Find(args)
	if err != nil {
		t.Errorf("README: %q: %v", line, err)
		return
	}
	cmd.InitDefaultHelpFlag()
	if cmd == root {
		root.InitDefaultVersionFlag()
	}
	if err := cmd.ParseFlags(rest); err != nil {
		t.Errorf("README: %q: %v", line, err)
		return
	}
	if cmd.Args != nil {
		if err := cmd.Args(cmd, cmd.Flags().Args()); err != nil {
			t.Errorf("README: %q: %v", line, err)
		}
	}
}

// readmeShellLines returns the lines of the README's ```sh blocks, with
// comments, environment assignments and what comes before a pipe removed.
func readmeShellLines(t *testing.T) []string {
	t.Helper()
	f, err := os.Open("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := sc.Text()
		switch {
		case strings.HasPrefix(l, "```sh"):
			in = true
		case strings.HasPrefix(l, "```"):
			in = false
		case in:
			if i := strings.LastIndex(l, "| hookctl"); i >= 0 {
				l = l[i+2:]
			}
			if i := strings.Index(l, " # "); i >= 0 {
				l = l[:i]
			}
			if i := strings.Index(l, " > "); i >= 0 {
				l = l[:i]
			}
			l = regexp.MustCompile(`^([A-Z_]+=\S+ )+`).ReplaceAllString(strings.TrimSpace(l), "")
			out = append(out, l)
		}
	}
	return out
}

// shellWords splits a command line as sh would for these simple lines:
// blanks separate words, quotes group them.
func shellWords(s string) []string {
	var words []string
	var cur strings.Builder
	inWord := false
	var quote rune
	for _, r := range s {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			cur.WriteRune(r)
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == ' ' || r == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}
