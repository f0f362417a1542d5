package e2e

import (
	"path/filepath"
	"strconv"
	"testing"

	"github.com/livinity/livinity-agent/deploy/demo"
	"github.com/livinity/livinity-agent/internal/testenv"
)

// Demo is what an end-to-end test of a running agent starts from: the agent built, the
// demo tree extracted, a PM2 home of its own and a free loopback address for /metrics,
// all under one short temp dir.
type Demo struct {
	Base        string // the temp dir holding everything
	Agent       string // the livinity-agent binary
	Tree        string // holds livos/ and nexus/
	PATH        string // PATH with the project's tools first
	PM2Bin      string
	PM2Home     string
	MetricsAddr string
}

// NewDemo prepares a Demo; the PM2 daemon under its home is killed at cleanup.
func NewDemo(t testing.TB) *Demo {
	t.Helper()
	return NewDemoWithAgent(t, "")
}

// NewDemoWithAgent is NewDemo with the given livinity-agent binary instead of a build of
// the working tree ("" builds it, as NewDemo): the benchmarks measure a build of a commit.
func NewDemoWithAgent(t testing.TB, agent string) *Demo {
	t.Helper()
	testenv.Require(t, "node", "npm", "python3")
	d := &Demo{Base: testenv.ShortTempDir(t), PATH: testenv.PATH(t), PM2Bin: filepath.Join(testenv.ToolsBin(t), "pm2")}
	d.Agent = agent
	if agent == "" {
		d.Agent = testenv.BuildAgent(t, d.Base)
	}
	d.Tree = filepath.Join(d.Base, "tree")
	if err := demo.Extract(d.Tree); err != nil {
		t.Fatal(err)
	}
	d.PM2Home = testenv.PM2Home(t, d.PM2Bin)
	d.MetricsAddr = "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	return d
}
