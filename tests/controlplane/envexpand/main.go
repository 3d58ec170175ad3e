// Command envexpand computes a container's environment as the kubelet does
// (pkg/kubelet/kubelet_pods.go, makeEnvironmentVariables, at the pinned release): envFrom sources
// in order (a later one wins, with its prefix), then env in order, each plain value expanded with
// Kubernetes' own expansion package against what is defined so far, each valueFrom read as is.
// Service links are left out (the tests' pods have none).
//
// stdin: {"container": <core/v1 Container>, "configMaps": {name: {key: value}},
//         "secrets": {name: {key: value}}}
// stdout: {name: value} of the container's final environment.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"k8s.io/kubernetes/third_party/forked/golang/expansion"
)

type input struct {
	Container struct {
		Env []struct {
			Name      string `json:"name"`
			Value     string `json:"value"`
			ValueFrom *struct {
				ConfigMapKeyRef *keyRef `json:"configMapKeyRef"`
				SecretKeyRef    *keyRef `json:"secretKeyRef"`
			} `json:"valueFrom"`
		} `json:"env"`
		EnvFrom []struct {
			Prefix       string `json:"prefix"`
			ConfigMapRef *ref   `json:"configMapRef"`
			SecretRef    *ref   `json:"secretRef"`
		} `json:"envFrom"`
	} `json:"container"`
	ConfigMaps map[string]map[string]string `json:"configMaps"`
	Secrets    map[string]map[string]string `json:"secrets"`
}

type ref struct {
	Name     string `json:"name"`
	Optional *bool  `json:"optional"`
}

type keyRef struct {
	Name     string `json:"name"`
	Key      string `json:"key"`
	Optional *bool  `json:"optional"`
}

func lookup(data map[string]map[string]string, name string) (map[string]string, error) {
	found, ok := data[name]
	if !ok {
		return nil, fmt.Errorf("%s not found", name)
	}
	return found, nil
}

func main() {
	var in input
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	tmpEnv := map[string]string{}
	for _, from := range in.Container.EnvFrom {
		var data map[string]string
		var err error
		var optional *bool
		switch {
		case from.ConfigMapRef != nil:
			data, err = lookup(in.ConfigMaps, from.ConfigMapRef.Name)
			optional = from.ConfigMapRef.Optional
		case from.SecretRef != nil:
			data, err = lookup(in.Secrets, from.SecretRef.Name)
			optional = from.SecretRef.Optional
		}
		if err != nil {
			if optional != nil && *optional {
				continue
			}
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		for k, v := range data {
			tmpEnv[from.Prefix+k] = v
		}
	}
	mappingFunc := expansion.MappingFuncFor(tmpEnv, map[string]string{})
	for _, envVar := range in.Container.Env {
		runtimeVal := envVar.Value
		if runtimeVal != "" {
			runtimeVal = expansion.Expand(runtimeVal, mappingFunc)
		} else if envVar.ValueFrom != nil {
			var source *keyRef
			var data map[string]map[string]string
			if envVar.ValueFrom.ConfigMapKeyRef != nil {
				source, data = envVar.ValueFrom.ConfigMapKeyRef, in.ConfigMaps
			} else if envVar.ValueFrom.SecretKeyRef != nil {
				source, data = envVar.ValueFrom.SecretKeyRef, in.Secrets
			}
			if source != nil {
				values, err := lookup(data, source.Name)
				value, ok := values[source.Key]
				if err != nil || !ok {
					if source.Optional != nil && *source.Optional {
						continue
					}
					fmt.Fprintf(os.Stderr, "%s: key %s of %s not found\n", envVar.Name, source.Key, source.Name)
					os.Exit(1)
				}
				runtimeVal = value
			}
		}
		tmpEnv[envVar.Name] = runtimeVal
	}
	if err := json.NewEncoder(os.Stdout).Encode(tmpEnv); err != nil {
		os.Exit(1)
	}
}
