// Go peer of examples/echo_server: a goroutine per connection echoing bytes, run
// with GOMAXPROCS=1 by bench/report.py (the echo rows), and with GOMAXPROCS=2 and
// -work (the "echo with work" rows). Prints the port it listens on.
//
//	echo_server [-work PASSES] [port]   (0 or none: any free port)
//	echo_server -calibrate PASSES      (the work's time per 64-byte message)
//
// -work PASSES: before echoing what it read, the server hashes it PASSES times,
// as echo_work.h says (the same loop as echoWork below, kept in step by hand).
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"time"
)

// echo_work.h's ECHO_WORK_BASIS and ECHO_WORK_PRIME.
const (
	workBasis uint64 = 0xcbf29ce484222325
	workPrime uint64 = 0x100000001b3
)

// echo_work.h's echo_work: FNV-1a over the bytes, passes times in a row.
func echoWork(h uint64, bytes []byte, passes int) uint64 {
	for k := 0; k < passes; k++ {
		for _, b := range bytes {
			h ^= uint64(b)
			h *= workPrime
		}
	}
	return h
}

var sink uint64 // every connection's hash, added when it ends

func calibrate(passes int) {
	msg := make([]byte, 64)
	for i := range msg {
		msg[i] = 'a'
	}
	h := workBasis
	best := 1e9
	for round := 0; round < 200; round++ {
		start := time.Now()
		for k := 0; k < 100; k++ {
			h = echoWork(h, msg, passes)
		}
		us := float64(time.Since(start).Nanoseconds()) / 1e3 / 100
		if us < best {
			best = us
		}
	}
	fmt.Printf("{\"passes\": %d, \"us_per_64_byte_message\": %.3f, \"hash\": %d}\n", passes, best, h)
}

func main() {
	passes := flag.Int("work", 0, "hash what is read this many times before echoing it (echo_work.h)")
	calibrateWork := flag.Int("calibrate", 0, "print the time of this many passes over a 64-byte message, and exit")
	flag.Parse()
	if *calibrateWork > 0 {
		calibrate(*calibrateWork)
		return
	}
	port := "0"
	if flag.NArg() > 0 {
		port = flag.Arg(0)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:"+port)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(ln.Addr().(*net.TCPAddr).Port)
	work := *passes
	for {
		c, err := ln.Accept()
		if err != nil {
			continue
		}
		go func(c net.Conn) {
			defer c.Close()
			h := workBasis
			defer func() { atomic.AddUint64(&sink, h) }()
			buf := make([]byte, 4096)
			for {
				n, err := c.Read(buf)
				if n > 0 {
					if work > 0 {
						h = echoWork(h, buf[:n], work)
					}
					if _, werr := c.Write(buf[:n]); werr != nil {
						return
					}
				}
				if err != nil {
					return
				}
			}
		}(c)
	}
}
