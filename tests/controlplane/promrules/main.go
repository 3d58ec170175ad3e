// promrules checks Prometheus rule files as Prometheus loads them (model/rulefmt: each rule's
// PromQL, its labels, the Go templates of its annotations), as `promtool check rules` does, and
// prints the series each rule selects, one JSON object per selector:
// {"rule": name, "metric": name, "labels": {label: value}} (equality matchers only), so a test
// can hold the selectors to the metrics that real programs expose. Exit 1 on any error.
package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
)

type selector struct {
	Rule   string            `json:"rule"`
	Metric string            `json:"metric"`
	Labels map[string]string `json:"labels"`
}

func main() {
	failed := false
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	p := parser.NewParser(parser.Options{})
	out := json.NewEncoder(os.Stdout)
	for _, f := range os.Args[1:] {
		groups, errs := rulefmt.ParseFile(f, false, model.UTF8Validation, p, logger)
		for _, e := range errs {
			fmt.Fprintln(os.Stderr, e)
			failed = true
		}
		if groups == nil {
			continue
		}
		for _, g := range groups.Groups {
			for _, r := range g.Rules {
				expr, err := p.ParseExpr(r.Expr)
				if err != nil {
					continue // reported above
				}
				name := r.Alert + r.Record
				parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
					if vs, ok := node.(*parser.VectorSelector); ok {
						s := selector{Rule: name, Metric: vs.Name, Labels: map[string]string{}}
						for _, m := range vs.LabelMatchers {
							if m.Type == labels.MatchEqual && m.Name != labels.MetricName {
								s.Labels[m.Name] = m.Value
							}
						}
						_ = out.Encode(s)
					}
					return nil
				})
			}
		}
	}
	if failed {
		os.Exit(1)
	}
}
