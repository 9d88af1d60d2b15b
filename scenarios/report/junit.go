// SPDX-License-Identifier: Apache-2.0

package report

import (
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// JUnit XML as CI systems read it: one testsuite per scenario, one testcase per check.
type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Time     string      `xml:"time,attr"`
	Cases    []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	ClassName string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitFailure `xml:"failure,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitFailure struct {
	Message string `xml:"message,attr"`
	Text    string `xml:",chardata"`
}

func seconds(d interface{ Seconds() float64 }) string { return fmt.Sprintf("%.3f", d.Seconds()) }

// WriteJUnit writes the scenarios' checks as JUnit XML: a testcase per check (what it
// looked at as its output), failed checks with their evidence.
func WriteJUnit(w io.Writer, results ...ScenarioResult) error {
	doc := junitSuites{}
	var total float64
	for _, s := range results {
		suite := junitSuite{Name: s.Name, Time: seconds(s.Duration)}
		for _, c := range s.Checks {
			jc := junitCase{Name: c.Name, ClassName: "podpath.scenarios." + s.Name, Time: seconds(c.Duration), SystemOut: "looked at: " + c.LookedAt}
			if !c.Passed {
				first, _, _ := strings.Cut(c.Evidence, "\n")
				jc.Failure = &junitFailure{Message: first, Text: c.Evidence}
				suite.Failures++
			}
			suite.Cases = append(suite.Cases, jc)
		}
		if len(s.Checks) == 0 && s.Error != "" {
			suite.Cases = append(suite.Cases, junitCase{Name: "scenario setup", ClassName: "podpath.scenarios." + s.Name,
				Time: "0.000", Failure: &junitFailure{Message: s.Error, Text: s.Error}})
			suite.Failures++
		}
		suite.Tests = len(suite.Cases)
		doc.Tests += suite.Tests
		doc.Failures += suite.Failures
		total += s.Duration.Seconds()
		doc.Suites = append(doc.Suites, suite)
	}
	doc.Time = fmt.Sprintf("%.3f", total)
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return fmt.Errorf("junit: %w", err)
	}
	_, err := io.WriteString(w, "\n")
	return err
}

// WriteJUnitFile is WriteJUnit into the file at path (its folder created).
func WriteJUnitFile(path string, results ...ScenarioResult) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("junit: %w", err)
	}
	if err := WriteJUnit(f, results...); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
