package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/livinity/livinity-agent/history"
	"github.com/urfave/cli/v3"
)

func historyCommand() *cli.Command {
	return &cli.Command{
		Name:  "history",
		Usage: "list the box's onboardings and updates: from and to which release, how they ended",
		Flags: historyFlags(),
		Action: func(ctx context.Context, cmd *cli.Command) error {
			stateDir, err := filepath.Abs(cmd.String(flagStateDir))
			if err != nil {
				return err
			}
			recs, err := history.Load(stateDir)
			if err != nil {
				return err
			}
			out := cmd.Root().Writer
			if cmd.Bool(flagJSON) {
				if recs == nil {
					recs = []history.Record{}
				}
				b, err := json.MarshalIndent(recs, "", "  ")
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(out, "%s\n", b)
				return err
			}
			if len(recs) == 0 {
				fmt.Fprintf(out, "no onboarding or update recorded in %s\n", stateDir)
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "AT\tKIND\tFROM\tTO\tOUTCOME\tDURATION\tRESTARTED\tERROR")
			for _, r := range recs {
				var restarted []string
				for name, what := range r.Services {
					if what == "restarted" || what == "rolled back" {
						restarted = append(restarted, name)
						slices.Sort(restarted)
					}
				}
				errText := r.Error
				if len(errText) > 80 {
					errText = errText[:77] + "..."
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.At.Local().Format(time.DateTime), r.Kind,
					short(r.From), short(r.To), r.Outcome, (time.Duration(r.DurationSeconds * float64(time.Second))).Round(100*time.Millisecond),
					orNone(restarted), errText)
			}
			return tw.Flush()
		},
	}
}

// short abbreviates a commit for the table.
func short(rev string) string {
	if len(rev) > 12 {
		return rev[:12]
	}
	if rev == "" {
		return "-"
	}
	return rev
}
