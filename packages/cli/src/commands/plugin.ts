import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { AdminApi } from '@gatehouse/core';
import { GatehouseClient, GatehouseError, parseDuration } from '@gatehouse/core';
import type { Command } from 'commander';
import { parse as parseYaml } from 'yaml';
import type { Ctx } from '../context.js';
import type { CallbackServer } from '../plugins/http.js';
import { JIRA_WEBHOOK_PATH, type JiraPluginConfig, jiraTarget, startJiraWebhook } from '../plugins/jira.js';
import {
  MATTERMOST_ACTIONS_PATH,
  type MattermostPluginConfig,
  mattermostTarget,
  startMattermostActions,
} from '../plugins/mattermost.js';
import { type PagerDutyPluginConfig, type PagerDutyPost, pagerDutyTarget } from '../plugins/pagerduty.js';
import {
  SLACK_INTERACTIVE_PATH,
  type SlackPluginConfig,
  slackTarget,
  startSlackInteractions,
} from '../plugins/slack.js';
import { type NotifyTarget, RequestWatcher, type WatchApi } from '../plugins/watcher.js';
import { startCallbackServer, webhookTarget } from '../plugins/webhook.js';
import { ClientHome, splitPems } from '../profile.js';
import { examples, usage } from './usage.js';

/**
 * `gatehouse plugin run KIND --config FILE`: an access request plugin as
 * its own process, authenticated as its bot user (a `gatehouse login` kept
 * in `home`, whose roles need `review_requests` to review from the tool).
 */
export function registerPlugin(program: Command, ctx: Ctx): void {
  const plugin = program.command('plugin').description('access request plugins (notifications and reviews)');
  plugin
    .command('run')
    .description('run a plugin until stopped (SIGTERM/SIGINT)')
    .argument('<kind>', `one of ${KINDS.join(', ')}`)
    // --config is the program's global option (here: the plugin's config, not a gateway's).
    .addHelpText(
      'after',
      `
--config FILE is required. The config (paths are relative to it):
  home: ./bot-home            # GATEHOUSE_HOME where the bot user ran gatehouse login
  state_file: ./state.json    # what was posted (no double posts after a restart)
  retry_interval: 2s          # first wait before reconnecting the watch (doubles up to 30s)
  webhook:
    url: https://hooks.example.com/gatehouse
    secret_file: ./webhook.secret            # signs what is posted (X-Gatehouse-Signature)
    callback_secret_file: ./callback.secret  # checks POST /callback reviews
    listen: 127.0.0.1:8081
  slack:                      # instead of webhook:
    token_file: ./slack.token                # the app's bot token (xoxb-...)
    signing_secret_file: ./slack.signing     # checks POST /slack/interactive (the app's Request URL)
    channel: C0123456789
    listen: 127.0.0.1:8082
    reviewers: { U0123ABCD: bob }            # Slack user id -> Gatehouse user allowed to review
  mattermost:                 # or:
    url: https://chat.example.com
    token_file: ./mattermost.token           # the bot account's access token
    action_secret_file: ./mattermost.secret  # sent in each button's context, required back (Mattermost does not sign)
    channel_id: 4xp9fdt77pncbef59f4k1qe83o
    listen: 127.0.0.1:8083
    action_url: https://gatehouse-plugin.example.com/mattermost/actions  # where Mattermost reaches listen
    reviewers: { 9ic6lwmgdtgqbn3xs3qp3ne8ey: bob }  # Mattermost user id -> Gatehouse user
  jira:                       # or: an issue per request, approved by a transition
    url: https://example.atlassian.net
    user: gatehouse-bot@example.com          # Basic auth: the account's email
    token_file: ./jira.token                 # and its API token
    project: OPS
    issue_type: Task
    webhook_secret_file: ./jira.webhook      # the Jira webhook's secret (X-Hub-Signature)
    listen: 127.0.0.1:8084                   # the webhook's URL: http://HOST:PORT/jira/webhook
    approve_status: Approved                 # moving the issue here approves, deny_status (Denied) denies
    reviewers: { 5b10ac8d82e05b22cc7d4ef5: bob }  # Jira account id -> Gatehouse user
  pagerduty:                  # or: approves requests of users on call (no callbacks)
    token_file: ./pagerduty.token            # a REST API key (Authorization: Token token=...)
    services: [Checkout API]                 # on call for one of these services -> approved
    emails: { alice: alice@example.com }     # Gatehouse user -> their PagerDuty user's email
    post:                                    # optional: write each new request to PagerDuty
      from: gatehouse-bot@example.com        # the PagerDuty user it posts as (From header)
      incident_service: Access Requests      # an incident per request on this service (urgency: low|high)
      # note_on: PT4KHLK                     # or: a note per request on this incident
${examples(`  $ gatehouse plugin run webhook --config /etc/gatehouse/webhook-plugin.yaml
  $ gatehouse plugin run slack --config /etc/gatehouse/slack-plugin.yaml
  $ gatehouse plugin run mattermost --config /etc/gatehouse/mattermost-plugin.yaml
  $ gatehouse plugin run jira --config /etc/gatehouse/jira-plugin.yaml
  $ gatehouse plugin run pagerduty --config /etc/gatehouse/pagerduty-plugin.yaml`)}`,
    )
    .action(async (kind: string, _o: unknown, cmd: Command) => {
      if (!(KINDS as readonly string[]).includes(kind))
        throw usage(`unknown plugin "${kind}"`, `use one of ${KINDS.join(', ')}`);
      const file = cmd.optsWithGlobals<{ config?: string }>().config;
      if (!file) throw usage('no plugin config', 'pass --config FILE (see --help for its keys)');
      const cfg = readConfig(file, kind as Kind);
      const home = new ClientHome(cfg.home);
      const api = () => {
        const profile = home.current();
        if (!profile) {
          throw new GatehouseError('GH_ERR_UNAUTHENTICATED', `no login in ${cfg.home}`, {
            hint: `log the bot user in there: GATEHOUSE_HOME=${cfg.home} gatehouse login --proxy HOST:PORT --user BOT`,
          });
        }
        const keys = home.readKeys(profile);
        const client = new GatehouseClient({
          proxy: profile.proxy,
          caPem: splitPems(keys.cas),
          certPem: keys.tlsCert,
          keyPem: keys.tlsKey,
        });
        return { api: client, close: () => client.close() };
      };
      const log = (m: string) => ctx.err(`${new Date().toISOString()} ${m}\n`);
      const running = await startPluginParts(cfg, api, log);
      const { callbacks, path } = running;
      ctx.out(
        callbacks
          ? `${kind} plugin running; callbacks on 127.0.0.1:${callbacks.port}${path}\n`
          : `${kind} plugin running; no callbacks\n`,
      );
      await new Promise<void>((done) => {
        const stop = () => done();
        process.once('SIGTERM', stop);
        process.once('SIGINT', stop);
      });
      await running.stop();
    });
}

/** A plugin's API as its bot user: the watch, the list and reviews, each checked by core. */
export type PluginApi = () => { api: WatchApi & Pick<AdminApi, 'reviewAccessRequest'>; close(): void };

/**
 * Starts one plugin (its callback listener where the tool can review, then
 * the watcher that tells the tool), the same code whether it runs as its
 * own process (`plugin run`) or inside the gateway (`plugins:`).
 */
export async function startPluginParts(
  cfg: PluginConfig,
  api: PluginApi,
  log: (msg: string) => void,
): Promise<{ callbacks?: CallbackServer | undefined; path: string; stop(): Promise<void> }> {
  let callbacks: CallbackServer | undefined;
  let path = '';
  let target: NotifyTarget;
  if (cfg.slack) {
    callbacks = await startSlackInteractions(cfg.slack, api, log);
    path = SLACK_INTERACTIVE_PATH;
    target = slackTarget(cfg.slack);
  } else if (cfg.mattermost) {
    callbacks = await startMattermostActions(cfg.mattermost, api, log);
    path = MATTERMOST_ACTIONS_PATH;
    target = mattermostTarget(cfg.mattermost, callbacks.port);
  } else if (cfg.jira) {
    callbacks = await startJiraWebhook(cfg.jira, api, log);
    path = JIRA_WEBHOOK_PATH;
    target = jiraTarget(cfg.jira);
  } else if (cfg.pagerduty) {
    target = pagerDutyTarget(cfg.pagerduty, api, log);
  } else {
    callbacks = await startCallbackServer(cfg.webhook!, api, log);
    path = '/callback';
    target = webhookTarget(cfg.webhook!);
  }
  let watcher: RequestWatcher;
  try {
    watcher = new RequestWatcher({ api, target, stateFile: cfg.stateFile, retryMs: cfg.retryMs, log });
  } catch (e) {
    await callbacks?.close();
    throw e;
  }
  watcher.start();
  return {
    callbacks,
    path,
    async stop() {
      await watcher.stop();
      await callbacks?.close();
    },
  };
}

export const KINDS = ['webhook', 'slack', 'mattermost', 'jira', 'pagerduty'] as const;
export type Kind = (typeof KINDS)[number];

export interface PluginConfig {
  stateFile: string;
  retryMs: number;
  webhook?: { url: string; secret: string; callbackSecret: string; listen: string } | undefined;
  slack?: SlackPluginConfig | undefined;
  pagerduty?: PagerDutyPluginConfig | undefined;
  mattermost?: MattermostPluginConfig | undefined;
  jira?: JiraPluginConfig | undefined;
}

function readConfig(file: string, kind: Kind): PluginConfig & { home: string } {
  let doc: Record<string, unknown>;
  try {
    doc = parseYaml(readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch (cause) {
    throw new GatehouseError('GH_ERR_CONFIG_INVALID', `cannot read ${file}: ${(cause as Error).message}`, {
      hint: 'pass a YAML file with --config',
      cause,
    });
  }
  const base = dirname(resolve(file));
  const home = doc?.home;
  if (typeof home !== 'string' || home === '') {
    throw new GatehouseError('GH_ERR_CONFIG_INVALID', `${file}: home must be a path`, {
      hint: 'see gatehouse plugin run --help for the config keys',
    });
  }
  return { ...pluginConfig(doc, kind, base, file), home: resolve(base, home) };
}

/**
 * One plugin's settings (the keys of `plugin run --config`, or of one
 * `plugins:` entry of the gateway's config), paths relative to `base`,
 * errors prefixed with `where`.
 */
export function pluginConfig(
  doc: Record<string, unknown>,
  kind: Kind,
  base: string,
  where: string,
): PluginConfig {
  const bad = (what: string) =>
    new GatehouseError('GH_ERR_CONFIG_INVALID', `${where}: ${what}`, {
      hint: 'see gatehouse plugin run --help for the config keys',
    });
  const path = (v: unknown, key: string) => {
    if (typeof v !== 'string' || v === '') throw bad(`${key} must be a path`);
    return resolve(base, v);
  };
  const section = doc?.[kind] as Record<string, unknown> | undefined;
  if (!section || typeof section !== 'object') throw bad(`${kind}: is missing`);
  const secret = (key: string) => {
    const text = readFileSync(path(section[`${key}_file`], `${kind}.${key}_file`), 'utf8').trim();
    if (text.length < 16) throw bad(`${kind}.${key}_file must hold a secret of at least 16 characters`);
    return text;
  };
  const listen = typeof section.listen === 'string' ? section.listen : '127.0.0.1:0';
  if (doc.poll_interval !== undefined) {
    throw bad("poll_interval is gone: plugins follow the gateway's watch now; set retry_interval instead");
  }
  const common = {
    stateFile: path(doc.state_file, 'state_file'),
    retryMs: typeof doc.retry_interval === 'string' ? parseDuration(doc.retry_interval) : 2000,
  };
  // Chat tool user id -> Gatehouse user: who may review from the tool.
  const reviewers = () => {
    const m = (section.reviewers ?? {}) as Record<string, unknown>;
    if (typeof m !== 'object' || !Object.values(m).every((v) => typeof v === 'string')) {
      throw bad(`${kind}.reviewers maps ${kind} user ids to Gatehouse user names`);
    }
    return m as Record<string, string>;
  };
  if (kind === 'slack') {
    if (typeof section.channel !== 'string' || !section.channel)
      throw bad('slack.channel must be a channel id');
    return {
      ...common,
      slack: {
        apiUrl: typeof section.api_url === 'string' ? section.api_url : 'https://slack.com/api',
        token: secret('token'),
        signingSecret: secret('signing_secret'),
        channel: section.channel,
        listen,
        reviewers: reviewers(),
      },
    };
  }
  if (kind === 'mattermost') {
    if (typeof section.url !== 'string' || !/^https?:\/\//.test(section.url))
      throw bad('mattermost.url must be the http(s) URL of the Mattermost server');
    if (typeof section.channel_id !== 'string' || !section.channel_id)
      throw bad('mattermost.channel_id must be a channel id');
    if (
      section.action_url !== undefined &&
      (typeof section.action_url !== 'string' || !/^https?:\/\//.test(section.action_url))
    )
      throw bad('mattermost.action_url must be an http(s) URL');
    return {
      ...common,
      mattermost: {
        url: section.url,
        token: secret('token'),
        actionSecret: secret('action_secret'),
        channelId: section.channel_id,
        listen,
        actionUrl: section.action_url as string | undefined,
        reviewers: reviewers(),
      },
    };
  }
  if (kind === 'jira') {
    const str = (key: string, dflt?: string) => {
      const v = section[key] ?? dflt;
      if (typeof v !== 'string' || !v) throw bad(`jira.${key} must be set`);
      return v;
    };
    if (!/^https?:\/\//.test(str('url'))) throw bad('jira.url must be the http(s) URL of the Jira site');
    return {
      ...common,
      jira: {
        url: str('url'),
        user: str('user'),
        token: secret('token'),
        project: str('project'),
        issueType: str('issue_type', 'Task'),
        webhookSecret: secret('webhook_secret'),
        listen,
        approveStatus: str('approve_status', 'Approved'),
        denyStatus: str('deny_status', 'Denied'),
        reviewers: reviewers(),
      },
    };
  }
  if (kind === 'pagerduty') {
    const services = section.services;
    if (
      !Array.isArray(services) ||
      services.length === 0 ||
      !services.every((v) => typeof v === 'string' && v)
    )
      throw bad('pagerduty.services must list PagerDuty service names');
    const emails = (section.emails ?? {}) as Record<string, unknown>;
    if (
      typeof emails !== 'object' ||
      !Object.values(emails).every((v) => typeof v === 'string' && v.includes('@'))
    )
      throw bad('pagerduty.emails maps Gatehouse user names to PagerDuty email addresses');
    // post: { from, incident_service, urgency } opens an incident per request; { from, note_on } notes on one.
    let post: PagerDutyPost | undefined;
    if (section.post !== undefined) {
      const p = section.post as Record<string, unknown>;
      if (typeof p !== 'object' || p === null) throw bad('pagerduty.post must be a mapping');
      if (typeof p.from !== 'string' || !p.from.includes('@'))
        throw bad('pagerduty.post.from must be the email of the PagerDuty user the plugin posts as');
      const on = p.note_on;
      const service = p.incident_service;
      if ((typeof on === 'string') === (typeof service === 'string'))
        throw bad(
          'pagerduty.post needs one of incident_service (a service name) or note_on (an incident id)',
        );
      if (p.urgency !== undefined && p.urgency !== 'high' && p.urgency !== 'low')
        throw bad('pagerduty.post.urgency must be high or low');
      post =
        typeof on === 'string'
          ? { kind: 'note', from: p.from, incidentId: on }
          : {
              kind: 'incident',
              from: p.from,
              service: service as string,
              urgency: (p.urgency as 'high' | 'low' | undefined) ?? 'low',
            };
    }
    return {
      ...common,
      pagerduty: {
        apiUrl: typeof section.api_url === 'string' ? section.api_url : 'https://api.pagerduty.com',
        token: secret('token'),
        services: services as string[],
        emails: emails as Record<string, string>,
        post,
      },
    };
  }
  if (typeof section.url !== 'string' || !/^https?:\/\//.test(section.url))
    throw bad('webhook.url must be an http(s) URL');
  return {
    ...common,
    webhook: {
      url: section.url,
      secret: secret('secret'),
      callbackSecret: secret('callback_secret'),
      listen,
    },
  };
}
