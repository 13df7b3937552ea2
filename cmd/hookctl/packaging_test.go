package main

import (
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// Packaging files are checked without a container runtime (none runs on
// these machines): what they name must exist and agree with the module.

func readRepo(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestDockerfile(t *testing.T) {
	df := readRepo(t, "Dockerfile")
	gomod := readRepo(t, "go.mod")
	goVer := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindStringSubmatch(gomod)[1]
	for _, want := range []string{
		"FROM golang:" + goVer + "-", // the module's Go
		"./cmd/hookctl",              // the main package
		"python3",                    // for the Python hook types
		"USER 10001",                 // not root
		`ENTRYPOINT ["/usr/local/bin/hookctl"]`,
	} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	if k := readRepo(t, "examples/deploy/kubernetes/hookctl.yaml"); !strings.Contains(k, "image: hookctl:latest") {
		t.Error("the Kubernetes example does not use the image the Dockerfile builds")
	}
}

func TestGoreleaser(t *testing.T) {
	var cfg struct {
		Version int `yaml:"version"`
		Builds  []struct {
			Main   string   `yaml:"main"`
			Goos   []string `yaml:"goos"`
			Goarch []string `yaml:"goarch"`
		} `yaml:"builds"`
		Archives []struct {
			Files []string `yaml:"files"`
		} `yaml:"archives"`
		Sboms []any `yaml:"sboms"`
	}
	if err := yaml.Unmarshal([]byte(readRepo(t, ".goreleaser.yaml")), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Version != 2 || len(cfg.Builds) != 1 || cfg.Builds[0].Main != "./cmd/hookctl" || len(cfg.Sboms) == 0 {
		t.Fatalf("unexpected goreleaser config: %+v", cfg)
	}
	if got := strings.Join(cfg.Builds[0].Goarch, ","); got != "amd64,arm64" {
		t.Errorf("goarch = %s, want amd64,arm64", got)
	}
	for _, f := range cfg.Archives[0].Files {
		if strings.ContainsAny(f, "*") {
			continue
		}
		readRepo(t, f) // must exist
	}
}

// TestManPages: `hookctl man DIR` writes a page for every visible command.
func TestManPages(t *testing.T) {
	dir := t.TempDir()
	if code := Main([]string{"man", dir}, nil, io.Discard, os.Stderr); code != 0 {
		t.Fatalf("hookctl man exited %d", code)
	}
	for _, page := range []string{"hookctl.1", "hookctl-hook-create.1", "hookctl-apply.1", "hookctl-serve.1", "hookctl-version.1"} {
		b, err := os.ReadFile(filepath.Join(dir, page))
		if err != nil {
			t.Errorf("no man page %s: %v", page, err)
			continue
		}
		if !strings.Contains(string(b), ".TH \"HOOKCTL\" \"1\"") {
			t.Errorf("%s is not a section 1 man page", page)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "hookctl-man.1")); err == nil {
		t.Error("the hidden man command got a page")
	}
}
