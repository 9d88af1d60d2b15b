// SPDX-License-Identifier: Apache-2.0

package kind

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os/exec"
	"strings"
	"time"
)

// DockerCheckTimeout bounds `docker info` in CheckDocker.
const DockerCheckTimeout = 10 * time.Second

// ErrDockerUnavailable matches (errors.Is) a *DockerUnavailableError: the kind backend
// needs a running Docker engine and none answers.
var ErrDockerUnavailable = errors.New("kind backend needs a running Docker engine")

// DockerUnavailableError says why Docker is not usable, with what docker printed.
type DockerUnavailableError struct {
	// Output is what `docker info` printed, trimmed; empty when docker did not run.
	Output string
	// Why is a short diagnosis: the client has no engine, docker is not installed, ...
	Why string
	// Err is the error of running docker.
	Err error
}

func (e *DockerUnavailableError) Error() string {
	said := e.Output
	if said == "" && e.Err != nil {
		said = e.Err.Error()
	}
	return fmt.Sprintf("%s: `docker info` says: %s (%s); use --backend netns, or run where Docker and the kindest/node image are present",
		ErrDockerUnavailable, said, e.Why)
}

// Is makes errors.Is(err, ErrDockerUnavailable) true.
func (e *DockerUnavailableError) Is(target error) bool { return target == ErrDockerUnavailable }

func (e *DockerUnavailableError) Unwrap() error { return e.Err }

// CheckDocker runs `docker info` (at most DockerCheckTimeout) and returns a
// *DockerUnavailableError, quoting docker's output, unless an engine answers.
func CheckDocker(ctx context.Context) error { return checkDocker(ctx, "docker") }

func checkDocker(ctx context.Context, docker string) error {
	ctx, cancel := context.WithTimeout(ctx, DockerCheckTimeout)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, docker, "info", "--format", "{{.ServerVersion}}")
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	text := strings.TrimSpace(out.String())
	switch {
	case errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist):
		return &DockerUnavailableError{Why: "no docker executable found", Err: err}
	case ctx.Err() != nil:
		return &DockerUnavailableError{Output: text, Why: fmt.Sprintf("no answer within %s", DockerCheckTimeout), Err: ctx.Err()}
	case err != nil && strings.Contains(text, "Cannot connect to the Docker daemon"):
		return &DockerUnavailableError{Output: text, Why: "this machine has only the Docker client", Err: err}
	case err != nil:
		return &DockerUnavailableError{Output: text, Why: "docker info failed: " + err.Error(), Err: err}
	case text == "" || strings.Contains(text, "<no value>"):
		return &DockerUnavailableError{Output: text, Why: "the engine reported no server version", Err: errors.New("no server version")}
	}
	return nil
}

// run runs name with args (stdin optional) and returns its combined output; a failure
// names the command, the exit status and the output.
func run(ctx context.Context, stdin io.Reader, name string, args ...string) ([]byte, error) {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = stdin
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.Bytes(), nil
}
