// Command decode reads request parts with the Go code kube-apiserver reads them with, for the
// cross-decoder tests: each stdin line is a JSON case {"mode": "...", "input": "<base64>"}, each
// stdout line the matching JSON answer {"ok": bool, "error": "...", "value": ..., ...}.
//
//	query  net/url.ParseQuery (what handlers read through req.URL.Query()); also "encoded", the
//	       url.Values.Encode of the parse (how the front re-encodes it)
//	json   sigs.k8s.io/json UnmarshalCaseSensitivePreserveInts (the apiserver's JSON decoding);
//	       "strict": the errors of UnmarshalStrict with duplicate fields disallowed
//	yaml   sigs.k8s.io/yaml YAMLToJSON, then the JSON decoding above (the apiserver's YAML path);
//	       "strict": the error of YAMLToJSONStrict
//	proto  gogo protobuf's proto.Unmarshal of a k8s protobuf body (magic + runtime.Unknown) whose
//	       raw object is an apps/v1 Deployment; "unknown": whether any field was not in the schema
//	       (see deployment.go for the schema, field numbers as in k8s.io/api's generated.proto)
package main

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"os"

	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

type request struct {
	Mode  string `json:"mode"`
	Input string `json:"input"`
}

type answer struct {
	OK      bool        `json:"ok"`
	Error   string      `json:"error,omitempty"`
	Value   interface{} `json:"value,omitempty"`
	Encoded string      `json:"encoded,omitempty"`
	Strict  []string    `json:"strict,omitempty"`
	Unknown bool        `json:"unknown,omitempty"`
}

func decodeJSON(data []byte) answer {
	var v interface{}
	if err := kjson.UnmarshalCaseSensitivePreserveInts(data, &v); err != nil {
		return answer{Error: err.Error()}
	}
	a := answer{OK: true, Value: v}
	var ignored interface{}
	strict, err := kjson.UnmarshalStrict(data, &ignored, kjson.DisallowDuplicateFields)
	if err != nil {
		a.Strict = append(a.Strict, err.Error())
	}
	for _, e := range strict {
		a.Strict = append(a.Strict, e.Error())
	}
	return a
}

func handle(req request) answer {
	data, err := base64.StdEncoding.DecodeString(req.Input)
	if err != nil {
		return answer{Error: "bad base64: " + err.Error()}
	}
	switch req.Mode {
	case "query":
		values, err := url.ParseQuery(string(data))
		a := answer{OK: err == nil, Value: values, Encoded: values.Encode()}
		if err != nil {
			a.Error = err.Error()
		}
		return a
	case "json":
		return decodeJSON(data)
	case "proto":
		return decodeProto(data)
	case "yaml":
		j, err := yaml.YAMLToJSON(data)
		if err != nil {
			return answer{Error: err.Error()}
		}
		a := decodeJSON(j)
		a.Strict = nil
		if _, err := yaml.YAMLToJSONStrict(data); err != nil {
			a.Strict = []string{err.Error()}
		}
		return a
	}
	return answer{Error: fmt.Sprintf("unknown mode %q", req.Mode)}
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 64<<20)
	out := json.NewEncoder(os.Stdout)
	for in.Scan() {
		var req request
		if err := json.Unmarshal(in.Bytes(), &req); err != nil {
			_ = out.Encode(answer{Error: "bad request line: " + err.Error()})
			continue
		}
		if err := out.Encode(handle(req)); err != nil {
			os.Exit(1)
		}
	}
}
