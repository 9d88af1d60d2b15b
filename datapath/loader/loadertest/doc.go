// SPDX-License-Identifier: Apache-2.0

// Package loadertest loads BPF objects for the tests of datapath/loader and datapath/progtest, closed when the test ends (datapath/testrun cannot: it must not import the loader).
package loadertest
