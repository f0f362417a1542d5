package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/huh"
	"github.com/urfave/cli/v3"
	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"github.com/livinity/livinity-agent/config"
	"github.com/livinity/livinity-agent/internal/atomicfile"
)

// errWizardAborted is returned when the user quits the wizard (ctrl+c).
var errWizardAborted = errors.New("wizard: cancelled; nothing was written")

// wizardCommand is `livinity-agent wizard --output FILE`: it asks the onboarding
// questions on the terminal and writes the answers as setup.json (mode 0600, atomically).
func wizardCommand() *cli.Command {
	return &cli.Command{
		Name:  "wizard",
		Usage: "answer a few questions on the terminal and write setup.json",
		Description: "Asks for the domain, HTTPS, the optional Telegram, Discord, voice and Gmail\n" +
			"integrations, the service ports and where the LivOS and Nexus trees are, checks every answer as setup.json would be\n" +
			"checked, and writes the file (mode 0600). It needs a terminal; without one, write\n" +
			"the file by hand from deploy/examples/setup.json.",
		Flags: wizardFlags(),
		Action: func(ctx context.Context, cmd *cli.Command) error {
			path := cmd.String(flagOutput)
			if path == "" {
				return errors.New("wizard: --output is missing; pass the setup.json to write, like --output /etc/livinity/setup.json")
			}
			in, out, ok := terminalIO(cmd.Root())
			if !ok {
				return errors.New("wizard: stdin and stdout are not a terminal, and the wizard needs one; " +
					"write setup.json by hand from deploy/examples/setup.json (deploy/examples/README.md lists every key), " +
					"then check it with `livinity-agent check --config FILE`")
			}
			if err := checkWritableDir(path); err != nil {
				return err
			}
			cfg, err := runWizard(ctx, in, out)
			if err != nil {
				return err
			}
			data, err := cfg.MarshalIndent()
			if err != nil {
				return fmt.Errorf("wizard: encode setup.json: %w", err)
			}
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				return fmt.Errorf("wizard: create the directory of --output: %w", err)
			}
			if err := atomicfile.WriteFile(path, data, 0o600); err != nil {
				return fmt.Errorf("wizard: %w", err)
			}
			fmt.Fprintf(out, "Wrote %s. Next: livinity-agent onboard --config %s\n", path, path)
			return nil
		},
	}
}

// terminalIO returns the command's input and output when both are terminals.
func terminalIO(root *cli.Command) (in, out *os.File, ok bool) {
	in, inOK := root.Reader.(*os.File)
	out, outOK := root.Writer.(*os.File)
	if !inOK || !outOK || !term.IsTerminal(int(in.Fd())) || !term.IsTerminal(int(out.Fd())) {
		return nil, nil, false
	}
	return in, out, true
}

// checkWritableDir fails early, before any question is asked, when path is a directory or
// its directory exists but cannot be written.
func checkWritableDir(path string) error {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return fmt.Errorf("wizard: --output %s is a directory; want a file path like %s", path, filepath.Join(path, "setup.json"))
	}
	dir := filepath.Dir(path)
	if _, err := os.Stat(dir); err != nil {
		return nil // created after the questions, or reported then
	}
	if err := unix.Access(dir, unix.W_OK); err != nil {
		return fmt.Errorf("wizard: --output %s: cannot write to %s: %w; run as a user who can, or pick another path", path, dir, err)
	}
	return nil
}

// runWizard asks for the domain, HTTPS, the Telegram, Discord, voice and Gmail settings
// (each optional: a section the user does not configure stays nil) and the four ports,
// pre-filled with config.Default's values. Every answer is checked when it is entered with
// config.Validate, on a candidate config holding the answers so far; the field does not
// let the user move on until it is fixed. Secrets are typed with password echo. in and
// out should be a terminal. The result is what config.Parse gives for the answers.
func runWizard(ctx context.Context, in io.Reader, out io.Writer) (*config.Config, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("wizard: %w", err)
	}
	a := newAnswers()
	form := huh.NewForm(a.groups()...).WithShowHelp(true)
	// The form runs in a program of our own rather than form.RunWithContext, so that both
	// ctrl+c and the end of ctx stop it the graceful way: bubbletea's kill path does not
	// wait for its input reader before closing it.
	form.SubmitCmd, form.CancelCmd = tea.Quit, tea.Quit
	p := tea.NewProgram(sizedForm{form}, tea.WithInput(in), tea.WithOutput(out))
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		select {
		case <-ctx.Done():
			p.Quit()
		case <-stop:
		}
	}()
	_, err := p.Run()
	close(stop)
	<-stopped
	switch {
	case form.State == huh.StateCompleted:
	case ctx.Err() != nil:
		return nil, fmt.Errorf("wizard: %w", ctx.Err())
	case form.State == huh.StateAborted, errors.Is(err, tea.ErrInterrupted), err == nil:
		return nil, errWizardAborted // ctrl+c, or SIGINT or SIGTERM caught by bubbletea
	default:
		return nil, fmt.Errorf("wizard: run the form: %w", err)
	}
	data, err := a.config().MarshalIndent()
	if err != nil {
		return nil, fmt.Errorf("wizard: encode the answers: %w", err)
	}
	cfg, err := config.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("wizard: the answers do not make a valid setup.json: %w", err)
	}
	return cfg, nil
}

// The size the form is drawn for when the terminal does not tell its own (a pseudo-terminal
// nobody sized, as `docker exec -t` can give, or a serial console).
const fallbackCols, fallbackRows = 80, 24

// sizedForm is the form, given fallbackCols x fallbackRows when the terminal reports no
// size: huh cannot lay a form out in 0 columns, and bubbletea's renderer needs the width
// to clear old text.
type sizedForm struct{ *huh.Form }

func (m sizedForm) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	if ws, ok := msg.(tea.WindowSizeMsg); ok && (ws.Width <= 0 || ws.Height <= 0) {
		if ws.Width <= 0 {
			ws.Width = fallbackCols
		}
		if ws.Height <= 0 {
			ws.Height = fallbackRows
		}
		// Sent again through the program, so that its renderer sees the size too.
		return m, func() tea.Msg { return ws }
	}
	_, cmd := m.Form.Update(msg)
	return m, cmd
}

// portPaths are the ports the wizard asks for, in setup.json order, with their titles and
// one line on each.
var portPaths = [...]struct{ path, title, about string }{
	{"ports.api", "nexus-core API port", "The HTTP API of nexus core, the AI backend; the UI talks to it."},
	{"ports.mcp", "nexus-mcp port", "The MCP server that gives the AI its tools."},
	{"ports.memory", "nexus-memory port", "The memory service that keeps what the AI remembers."},
	{"ports.livos", "LivOS (livinityd) port", "The LivOS web UI and its server, livinityd; your proxy or browser goes here."},
}

// treePaths are the install paths the wizard asks for, with their titles and one line on
// each.
var treePaths = [...]struct{ path, title, about string }{
	{"paths.livosBaseDir", "LivOS tree", "The directory holding the LivOS checkout (livos/: package.json, packages/livinityd)."},
	{"paths.nexusBaseDir", "Nexus tree", "The directory holding the Nexus checkout (nexus/: packages/core, worker, mcp-server)."},
}

// answers are the wizard's answers as typed; the form's fields point into it.
type answers struct {
	domain                           string
	useHTTPS                         bool
	telegram, discord, voice, gmail  bool
	telegramToken, telegramPolicy    string
	discordToken, discordAppID       string
	deepgramKey, cartesiaKey         string
	gmailClientID, gmailClientSecret string
	ports                            [len(portPaths)]string
	trees                            [len(treePaths)]string
}

func newAnswers() *answers {
	d := config.Default()
	return &answers{
		telegramPolicy: "pairing",
		ports: [len(portPaths)]string{
			strconv.Itoa(d.Ports.API), strconv.Itoa(d.Ports.MCP),
			strconv.Itoa(d.Ports.Memory), strconv.Itoa(d.Ports.Livos),
		},
		// the defaults are the answers until changed: Enter keeps them
		trees: [len(treePaths)]string{d.Paths.LivosBaseDir, d.Paths.NexusBaseDir},
	}
}

// localhost says whether the domain is a local-only install, where HTTPS is not asked.
func (a *answers) localhost() bool {
	return strings.EqualFold(strings.TrimSpace(a.domain), "localhost")
}

// config builds the Config the answers stand for, from config.Default. Surrounding
// spaces are dropped; a port that is not a number becomes 0, which Validate rejects.
// Voice is left out when both keys are empty.
func (a *answers) config() *config.Config {
	c := config.Default()
	c.Domain = strings.TrimSpace(a.domain)
	c.UseHTTPS = a.useHTTPS && !a.localhost()
	if a.telegram {
		c.Telegram = &config.Telegram{BotToken: strings.TrimSpace(a.telegramToken), DMPolicy: a.telegramPolicy}
	}
	if a.discord {
		c.Discord = &config.Discord{BotToken: strings.TrimSpace(a.discordToken), ApplicationID: strings.TrimSpace(a.discordAppID)}
	}
	if a.voice {
		v := config.Voice{DeepgramAPIKey: strings.TrimSpace(a.deepgramKey), CartesiaAPIKey: strings.TrimSpace(a.cartesiaKey)}
		if v != (config.Voice{}) {
			c.Voice = &v
		}
	}
	if a.gmail {
		c.Gmail = &config.Gmail{ClientID: strings.TrimSpace(a.gmailClientID), ClientSecret: strings.TrimSpace(a.gmailClientSecret)}
	}
	for i := range portPaths {
		*portField(c, i) = parsePortOrZero(a.ports[i])
	}
	for i := range treePaths {
		*treeField(c, i) = strings.TrimSpace(a.trees[i])
	}
	return c
}

// treeField points at the i-th path of treePaths in c.
func treeField(c *config.Config, i int) *string {
	return [...]*string{&c.Paths.LivosBaseDir, &c.Paths.NexusBaseDir}[i]
}

func parsePortOrZero(s string) int {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return 0
	}
	return n
}

// portField points at the i-th port of portPaths in c.
func portField(c *config.Config, i int) *int {
	return [...]*int{&c.Ports.API, &c.Ports.MCP, &c.Ports.Memory, &c.Ports.Livos}[i]
}

// Section getters for the checks: they create the section when the candidate lacks it.
func telegramOf(c *config.Config) *config.Telegram {
	if c.Telegram == nil {
		c.Telegram = &config.Telegram{DMPolicy: "pairing"}
	}
	return c.Telegram
}

func discordOf(c *config.Config) *config.Discord {
	if c.Discord == nil {
		c.Discord = &config.Discord{}
	}
	return c.Discord
}

func voiceOf(c *config.Config) *config.Voice {
	if c.Voice == nil {
		c.Voice = &config.Voice{}
	}
	return c.Voice
}

func gmailOf(c *config.Config) *config.Gmail {
	if c.Gmail == nil {
		c.Gmail = &config.Gmail{}
	}
	return c.Gmail
}

// checkText is the validation of the text answer at path (a setup.json key): field points
// at it in a candidate config.
func (a *answers) checkText(path string, field func(*config.Config) *string) func(string) error {
	return func(v string) error {
		with, without := a.config(), a.config()
		*field(with) = strings.TrimSpace(v)
		*field(without) = ""
		return answerError(path, with.Validate(), without.Validate())
	}
}

// checkPort is the validation of the i-th port answer.
func (a *answers) checkPort(i int) func(string) error {
	path := portPaths[i].path
	return func(v string) error {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			return &config.FieldError{Path: path, Value: strconv.Quote(v), Problem: "is not a whole number", Fix: "want a number from 1 to 65535"}
		}
		with, without := a.config(), a.config()
		*portField(with, i) = n
		*portField(without, i) = 0
		return answerError(path, with.Validate(), without.Validate())
	}
}

// answerError picks the problems of a candidate config that the answer at path is
// responsible for: those reported at path, and those reported elsewhere that are not
// there without the answer (a port that another port already uses is reported at the
// later one). with and without are Validate's results with the answer and without it.
func answerError(path string, with, without error) error {
	before := map[string]bool{}
	for _, e := range fieldErrors(without) {
		before[e.Error()] = true
	}
	var errs []error
	for _, e := range fieldErrors(with) {
		if e.Path == path || !before[e.Error()] {
			errs = append(errs, e)
		}
	}
	return errors.Join(errs...)
}

// fieldErrors lists the *config.FieldError inside a Validate error.
func fieldErrors(err error) []*config.FieldError {
	var list []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		list = j.Unwrap()
	} else if err != nil {
		list = []error{err}
	}
	var out []*config.FieldError
	for _, e := range list {
		var fe *config.FieldError
		if errors.As(e, &fe) {
			out = append(out, fe)
		} else {
			out = append(out, &config.FieldError{Path: "(unknown)", Problem: e.Error()})
		}
	}
	return out
}

// secretInput is an input whose characters are shown as asterisks.
func secretInput(title string) *huh.Input {
	return huh.NewInput().Title(title).EchoMode(huh.EchoModePassword)
}

// section is an optional part of setup.json: a yes/no question, then its fields.
func section(enabled *bool, question, description string, fields ...huh.Field) []*huh.Group {
	ask := huh.NewGroup(huh.NewConfirm().Title(question).Description(description).
		Affirmative("Yes").Negative("No").Value(enabled))
	details := huh.NewGroup(fields...).WithHideFunc(func() bool { return !*enabled })
	return []*huh.Group{ask, details}
}

// groups are the wizard's pages, in order.
func (a *answers) groups() []*huh.Group {
	groups := []*huh.Group{
		huh.NewGroup(
			huh.NewInput().Title("Domain").
				Description("The hostname this server is reached at, like home.example.com; localhost for a local-only install.").
				Placeholder("home.example.com").Value(&a.domain).
				Validate(a.checkText("domain", func(c *config.Config) *string { return &c.Domain })),
		).Title("LivOS setup").Description("Every answer is checked as setup.json would be. Ctrl+C quits without writing anything."),
		huh.NewGroup(
			huh.NewConfirm().Title("Use HTTPS?").
				Description("Serve LivOS at https://<domain>; the domain must point to this server.").
				Affirmative("Yes").Negative("No").Value(&a.useHTTPS),
		).WithHideFunc(a.localhost),
	}
	groups = append(groups, section(&a.telegram, "Configure Telegram?", "Talk to LivOS through a Telegram bot.",
		secretInput("Telegram bot token").Description("The token @BotFather gave, like 123456789:AAH…").Value(&a.telegramToken).
			Validate(a.checkText("telegram.botToken", func(c *config.Config) *string { return &telegramOf(c).BotToken })),
		huh.NewSelect[string]().Title("Who may message the bot?").Description("Pairing is safer: the bot answers only users you approved.").Options(
			huh.NewOption("pairing: a new user must pair first", "pairing"),
			huh.NewOption("open: anyone who finds the bot", "open"),
		).Value(&a.telegramPolicy),
	)...)
	groups = append(groups, section(&a.discord, "Configure Discord?", "Talk to LivOS through a Discord bot.",
		secretInput("Discord bot token").Description("From the Discord developer portal: Bot, Reset Token.").Value(&a.discordToken).
			Validate(a.checkText("discord.botToken", func(c *config.Config) *string { return &discordOf(c).BotToken })),
		huh.NewInput().Title("Discord application ID").Description("17 to 20 digits, from General Information.").Value(&a.discordAppID).
			Validate(a.checkText("discord.applicationId", func(c *config.Config) *string { return &discordOf(c).ApplicationID })),
	)...)
	groups = append(groups, section(&a.voice, "Configure voice?", "Speech to text with Deepgram, text to speech with Cartesia.",
		secretInput("Deepgram API key").Description("Leave empty to go without.").Value(&a.deepgramKey).
			Validate(a.checkText("voice.deepgramApiKey", func(c *config.Config) *string { return &voiceOf(c).DeepgramAPIKey })),
		secretInput("Cartesia API key").Description("Leave empty to go without.").Value(&a.cartesiaKey).
			Validate(a.checkText("voice.cartesiaApiKey", func(c *config.Config) *string { return &voiceOf(c).CartesiaAPIKey })),
	)...)
	groups = append(groups, section(&a.gmail, "Configure Gmail?", "Let LivOS read and send mail with a Google OAuth client.",
		huh.NewInput().Title("Gmail OAuth client ID").Description("Ends in .apps.googleusercontent.com.").Value(&a.gmailClientID).
			Validate(a.checkText("gmail.clientId", func(c *config.Config) *string { return &gmailOf(c).ClientID })),
		secretInput("Gmail OAuth client secret").Description("Shown beside the client ID in the Google Cloud console.").Value(&a.gmailClientSecret).
			Validate(a.checkText("gmail.clientSecret", func(c *config.Config) *string { return &gmailOf(c).ClientSecret })),
	)...)
	ports := make([]huh.Field, len(portPaths))
	for i, p := range portPaths {
		ports[i] = huh.NewInput().Title(p.title).Description(p.about).Value(&a.ports[i]).Validate(a.checkPort(i))
	}
	groups = append(groups, huh.NewGroup(ports...).Title("Ports").
		Description("Keep the defaults unless another program already uses one."))
	trees := make([]huh.Field, len(treePaths))
	for i, p := range treePaths {
		trees[i] = huh.NewInput().Title(p.title).Description(p.about + " Enter keeps " + a.trees[i] + ".").
			Value(&a.trees[i]).Validate(a.checkText(p.path, func(c *config.Config) *string { return treeField(c, i) }))
	}
	groups = append(groups, huh.NewGroup(trees...).Title("Install paths").
		Description("Where the LivOS and Nexus trees are (or will be): absolute paths, each outside the other."))
	return groups
}
