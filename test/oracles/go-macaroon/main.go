// Test oracle: gopkg.in/macaroon.v2 driven by JSON on stdin/stdout, so the TS tests can
// compare our codec with an independent implementation byte for byte.
// Build offline: GO111MODULE=off GOPATH=/usr/share/gocode go build
package main

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"

	"gopkg.in/macaroon.v2"
)

type request struct {
	RootKeyHex string   `json:"rootKeyHex"`
	IDHex      string   `json:"idHex"`
	Location   string   `json:"location"`
	Caveats    []string `json:"caveats"`
	B64        string   `json:"b64"`
	// "v1": libmacaroons V1 packets in URL-safe base64 with padding, as ngx_l402 hands them out.
	Format string `json:"format"`
}

type verifyResult struct {
	OK        bool     `json:"ok"`
	IDHex     string   `json:"idHex"`
	Location  string   `json:"location"`
	Caveats   []string `json:"caveats"`
	Reencoded string   `json:"reencoded"`
	Error     string   `json:"error,omitempty"`
}

func marshal(m *macaroon.Macaroon) string {
	b, err := m.MarshalBinary()
	must(err)
	return base64.StdEncoding.EncodeToString(b)
}

// decode parses a std-base64 V2 binary macaroon (the L402 header form).
func decode(b64 string) (*macaroon.Macaroon, error) {
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, err
	}
	var m macaroon.Macaroon
	if err := m.UnmarshalBinary(raw); err != nil {
		return nil, err
	}
	return &m, nil
}

func mint(req request) interface{} {
	key, err := hex.DecodeString(req.RootKeyHex)
	must(err)
	id, err := hex.DecodeString(req.IDHex)
	must(err)
	version := macaroon.V2
	if req.Format == "v1" {
		version = macaroon.V1
	}
	m, err := macaroon.New(key, id, req.Location, version)
	must(err)
	for _, c := range req.Caveats {
		must(m.AddFirstPartyCaveat([]byte(c)))
	}
	if req.Format == "v1" {
		b, err := m.MarshalBinary()
		must(err)
		return map[string]string{"b64": base64.URLEncoding.EncodeToString(b)}
	}
	return map[string]string{"b64": marshal(m)}
}

// attenuate adds caveats without the root key, as a client holding the macaroon would.
func attenuate(req request) interface{} {
	m, err := decode(req.B64)
	must(err)
	for _, c := range req.Caveats {
		must(m.AddFirstPartyCaveat([]byte(c)))
	}
	return map[string]string{"b64": marshal(m)}
}

func verify(req request) interface{} {
	res := verifyResult{Caveats: []string{}}
	key, err := hex.DecodeString(req.RootKeyHex)
	must(err)
	m, err := decode(req.B64)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	res.IDHex = hex.EncodeToString(m.Id())
	res.Location = m.Location()
	res.Reencoded = marshal(m)
	// Caveat semantics are ours to judge; the oracle only checks the HMAC chain.
	err = m.Verify(key, func(c string) error {
		res.Caveats = append(res.Caveats, c)
		return nil
	}, nil)
	if err != nil {
		res.Error = err.Error()
	} else {
		res.OK = true
	}
	return res
}

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
}

func main() {
	if len(os.Args) != 2 {
		must(fmt.Errorf("usage: go-macaroon mint|verify|attenuate < request.json"))
	}
	var req request
	must(json.NewDecoder(os.Stdin).Decode(&req))
	var out interface{}
	switch os.Args[1] {
	case "mint":
		out = mint(req)
	case "verify":
		out = verify(req)
	case "attenuate":
		out = attenuate(req)
	default:
		must(fmt.Errorf("unknown subcommand %q", os.Args[1]))
	}
	must(json.NewEncoder(os.Stdout).Encode(out))
}
