// The web desk in a real browser: Debian's Chromium driven by playwright-core
// against a real klad-server, with a resident's phone on the real Python
// bindings. axe-core checks every page against WCAG 2.1 A and AA.
//
// Environment (set by scripts/test-web.sh):
//   KLAD_SERVER_BIN       the klad-server binary
//   KLAD_BINDINGS_PYTHON  the generated Python bindings (for phone.py)
//   KLAD_CHROMIUM         the browser (default /usr/bin/chromium)
//   KLAD_SCREENSHOTS      a directory to save screenshots of the main pages in

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { AxeBuilder } from '@axe-core/playwright';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../../..');
const serverBin = process.env.KLAD_SERVER_BIN ?? path.join(root, 'target/debug/klad-server');
const chromiumPath = process.env.KLAD_CHROMIUM ?? '/usr/bin/chromium';
const screenshots = process.env.KLAD_SCREENSHOTS;

let data, server, base, setupLink, browser;
const s = {}; // what one step leaves for the next

/** Starts klad-server on a free loopback port; resolves with its address and first-run link. */
function startServer(dir) {
  return new Promise((resolve, reject) => {
    const proc = spawn(serverBin, ['--data', dir, '--listen', '127.0.0.1:0'], {
      env: { ...process.env, RUST_LOG: process.env.KLAD_TEST_LOG ?? 'warn' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    const timer = setTimeout(() => reject(new Error(`klad-server did not start in 60 s; it printed: ${out}`)), 60_000);
    proc.on('exit', (code) => reject(new Error(`klad-server exited (${code}) before it was ready: ${out}`)));
    proc.stdout.on('data', (chunk) => {
      out += chunk;
      const addr = out.match(/listening on (\S+)/);
      const link = out.match(/(http:\/\/\S+\/desk\/start\/[0-9a-f]+)\r?\n/);
      if (addr && link) {
        clearTimeout(timer);
        resolve({ proc, base: `http://${addr[1]}`, setupLink: link[1] });
      }
    });
  });
}

/** axe-core on the page as it is: no violation of WCAG 2.1 A or AA. */
async function accessible(page, what) {
  const result = await new AxeBuilder({ page })
    .withTags(['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'])
    .analyze();
  const found = result.violations.map(
    (v) => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`,
  );
  assert.deepEqual(found, [], `${what} has accessibility violations`);
  // Usable at 320 px: nothing wider than the window.
  const size = page.viewportSize();
  await page.setViewportSize({ width: 320, height: 640 });
  const wide = await page.evaluate(() => document.documentElement.scrollWidth);
  await page.setViewportSize(size);
  assert.ok(wide <= 320, `${what} is ${wide} px wide at a 320 px window`);
}

async function shot(page, name) {
  if (!screenshots) return;
  mkdirSync(screenshots, { recursive: true });
  await page.screenshot({ path: path.join(screenshots, `${name}.png`), fullPage: true });
}

/** A fresh browser profile, as a different person on another computer. */
async function person() {
  const context = await browser.newContext({ viewport: { width: 1024, height: 768 }, locale: 'nl-NL' });
  return { context, page: await context.newPage() };
}

async function linkOnPage(page) {
  const link = await page.locator('#link').inputValue();
  assert.match(link, /\/desk\/in\/v4\.public\./);
  return link;
}

before(async () => {
  data = mkdtempSync(path.join(tmpdir(), 'klad-desk-'));
  ({ proc: server, base, setupLink } = await startServer(path.join(data, 'server')));
  browser = await chromium.launch({ executablePath: chromiumPath, args: ['--no-sandbox'] });
});

after(async () => {
  await browser?.close();
  server?.kill('SIGKILL');
  if (data) rmSync(data, { recursive: true, force: true });
});

test('the operator opens the first process from the link the server printed', async () => {
  const { page } = await person();
  await page.goto(setupLink);
  assert.equal(await page.locator('html').getAttribute('lang'), 'nl');
  await accessible(page, 'the first-run page');
  await shot(page, 'first-run');
  await page.getByLabel('Titel van de verordening').fill('Groen in de Schilderswijk');
  await page.getByLabel('Naam van de facilitator').fill('Fenna');
  await page.getByRole('button', { name: 'Proces openen' }).click();
  await page.getByRole('heading', { name: /Groen in de Schilderswijk/ }).waitFor();
  s.fenna = await linkOnPage(page);
  assert.ok(await page.locator('figure.qr svg').count() === 1, 'the invitation has a QR code');
  await accessible(page, 'the first facilitator\'s invitation');
  await page.context().close();
});

test('the first-run link works only once', async () => {
  const { page, context } = await person();
  const r = await page.goto(setupLink);
  assert.equal(r.status(), 404);
  await page.getByText('al gebruikt').waitFor();
  await accessible(page, 'the used first-run link');
  await context.close();
});

test('the facilitator signs in with the link and invites an official and a resident', async () => {
  const { page } = await person();
  s.fennaPage = page;
  await page.goto(s.fenna);
  await accessible(page, 'the sign-in page');
  await page.getByRole('button', { name: 'Inloggen' }).click();
  await page.getByRole('heading', { name: 'Groen in de Schilderswijk' }).waitFor();
  await accessible(page, 'the facilitator\'s overview');
  await shot(page, 'overview-facilitator');
  const cookies = await page.context().cookies();
  const session = cookies.find((c) => c.name === 'klad_desk');
  assert.ok(session, 'a session cookie is set');
  assert.equal(session.httpOnly, true);
  assert.equal(session.sameSite, 'Strict');

  await page.getByRole('link', { name: 'Deelnemers' }).click();
  await accessible(page, 'the members page');
  for (const [name, role, key] of [['Olga de Vries', 'ambtenaar', 'olga'], ['Anna', 'inwoner (schrijver)', 'anna']]) {
    await page.getByRole('link', { name: 'Deelnemers' }).click();
    await page.getByLabel('Naam').fill(name);
    await page.getByLabel(role).check();
    await page.getByRole('button', { name: 'Uitnodiging maken' }).click();
    await page.getByRole('heading', { name: `Uitnodiging voor ${name}` }).waitFor();
    s[key] = await linkOnPage(page);
  }
  await accessible(page, 'an invitation');
  await shot(page, 'invitation');
  await page.getByRole('link', { name: 'Deelnemers' }).click();
  await page.getByRole('cell', { name: 'Olga de Vries' }).waitFor();
});

test('a resident drafts an article and comments on it from the phone', () => {
  const token = s.anna.split('/desk/in/')[1];
  const out = execFileSync('python3', [
    path.join(here, 'phone.py'), path.join(data, 'anna-phone'), base, token, 'draft',
    'Bomen', 'De gemeente plant in elke straat bomen.', 'in elke straat', 'Ook in de Jacob Catsstraat?',
  ], { encoding: 'utf8', timeout: 120_000 });
  s.drafted = JSON.parse(out.trim().split('\n').pop());
  assert.ok(s.drafted.article && s.drafted.thread);
});

test('the official signs in and finds the comment in the inbox, with the keyboard only', async () => {
  const { page } = await person();
  s.olgaPage = page;
  await page.goto(s.olga);
  // Keyboard only: the skip link, then the sign-in button.
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.textContent.trim()), 'Naar de inhoud');
  let reached = false;
  for (let i = 0; i < 10 && !reached; i++) {
    await page.keyboard.press('Tab');
    reached = await page.evaluate(() => document.activeElement.textContent.trim() === 'Inloggen');
  }
  assert.ok(reached, 'the sign-in button is reachable with Tab');
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { name: 'Groen in de Schilderswijk' }).waitFor();
  await accessible(page, 'the official\'s overview');

  // To the inbox through the menu, with Tab and Enter.
  reached = false;
  for (let i = 0; i < 15 && !reached; i++) {
    await page.keyboard.press('Tab');
    reached = await page.evaluate(() => document.activeElement.textContent.trim() === 'Te beantwoorden');
  }
  assert.ok(reached, 'the inbox link is reachable with Tab');
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { name: 'Te beantwoorden', level: 1 }).waitFor();
  const row = page.getByRole('row', { name: /Ook in de Jacob Catsstraat/ });
  await row.waitFor();
  assert.match(await row.textContent(), /sinds vandaag/);
  assert.match(await row.textContent(), /Anna/);
  await accessible(page, 'the inbox');
  await shot(page, 'inbox');

  // The comment's link leads to the article, the passage marked and numbered.
  const link = row.getByRole('link');
  await link.focus();
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { name: /Artikel 1: Bomen/ }).waitFor();
  assert.ok(page.url().endsWith(`#thread-${s.drafted.thread}`), `the link names the thread: ${page.url()}`);
  assert.equal(await page.locator(`#thread-${s.drafted.thread}`).count(), 1, 'the thread is on the page');
  assert.equal(await page.locator('mark').first().textContent(), 'in elke straat');
  await page.getByRole('link', { name: 'naar reactie 1' }).waitFor();
  await page.getByText('Ook in de Jacob Catsstraat?').waitFor();
  await accessible(page, 'an article with a comment');
  await shot(page, 'article');
});

test('the official answers the comment; the resident\'s phone sees the answer', async () => {
  const page = s.olgaPage;
  const thread = page.locator(`#thread-${s.drafted.thread}`);
  await thread.getByLabel('deels overgenomen').check();
  await thread.getByLabel('Reden (die ziet iedereen)').fill('De Jacob Catsstraat krijgt bomen in 2027; de smalle stegen niet.');
  await thread.getByRole('button', { name: 'Antwoord opslaan' }).click();
  await page.getByRole('status').filter({ hasText: 'Opgeslagen' }).waitFor();
  await thread.getByText('Formeel antwoord van Olga de Vries').waitFor();
  await thread.getByText('beantwoord').first().waitFor();
  await accessible(page, 'the article after an answer');

  const token = s.anna.split('/desk/in/')[1];
  const out = execFileSync('python3', [
    path.join(here, 'phone.py'), path.join(data, 'anna-phone'), base, token, 'answer', s.drafted.thread,
  ], { encoding: 'utf8', timeout: 120_000 });
  const answer = JSON.parse(out.trim().split('\n').pop());
  assert.equal(answer.author, 'Olga de Vries');
  assert.match(answer.status, /PARTLY_ADOPTED|PartlyAdopted/i);
  assert.match(answer.reason, /Jacob Catsstraat krijgt bomen/);

  // Nothing is left waiting in the inbox.
  await page.getByRole('link', { name: 'Te beantwoorden' }).click();
  await page.getByText('Er wacht niets op een antwoord.').waitFor();
});

test('an official is not offered the text, and a forged form to change it is refused', async () => {
  const page = s.olgaPage;
  await page.goto(`${base}/desk/articles/${s.drafted.article}`);
  assert.equal(await page.locator('form[action$="/text"]').count(), 0, 'no form edits the text');
  const csrf = await page.locator('input[name=csrf]').first().inputValue();
  // The right cookie and form secret, but an official may not change the
  // text: klad-core refuses with its sentence, and nothing changes.
  let r = await page.request.post(`${base}/desk/articles/${s.drafted.article}/text`, {
    form: { csrf, body: 'De gemeente plant nergens bomen.' },
  });
  assert.equal(r.status(), 403);
  assert.match(await r.text(), /Alleen inwoners mogen dat/);
  // A formal answer without a reason is refused with a sentence too.
  r = await page.request.post(`${base}/desk/threads/${s.drafted.thread}/answer`, {
    form: { csrf, status: 'adopted', reason: '   ' },
  });
  assert.equal(r.status(), 400);
  assert.match(await r.text(), /motivering van het formele antwoord is leeg/);
  await page.goto(`${base}/desk/articles/${s.drafted.article}`);
  assert.equal(await page.locator('.body').textContent(), 'De gemeente plant in elke straat[1] bomen.');
});

test('the official comments on words of the article and suggests new wording', async () => {
  const page = s.olgaPage;
  await page.goto(`${base}/desk/articles/${s.drafted.article}`);
  await page.getByLabel('Over welke tekst (optioneel)').fill('elke straat');
  await page.getByLabel('Uw reactie').fill('Geldt dit ook voor de pleinen?');
  await page.getByRole('button', { name: 'Reactie plaatsen' }).click();
  await page.getByRole('heading', { name: /Reactie van Olga de Vries/ }).waitFor();
  await page.getByLabel('Over welke tekst (optioneel)').fill('bomen');
  await page.getByLabel('Uw reactie').fill('Linden geven minder overlast.');
  await page.getByLabel('Voorgestelde tekst (voor een tekstvoorstel)').fill('linden');
  await page.getByRole('button', { name: 'Tekstvoorstel plaatsen' }).click();
  await page.getByRole('heading', { name: /Tekstvoorstel van Olga de Vries/ }).waitFor();
  // Words that are not in the article: a sentence, nothing stored.
  await page.getByLabel('Over welke tekst (optioneel)').fill('struiken');
  await page.getByLabel('Uw reactie').fill('Waar?');
  await page.getByRole('button', { name: 'Reactie plaatsen' }).click();
  await page.getByRole('alert').filter({ hasText: 'staan niet in het artikel' }).waitFor();
  assert.equal(await page.getByText('Waar?', { exact: true }).count(), 0);
  await accessible(page, 'an article with the comment form');
});

test('the facilitator enters a letter on behalf of a resident without a phone', async () => {
  const page = s.fennaPage;
  await page.getByRole('link', { name: 'Brief invoeren' }).click();
  await page.getByRole('heading', { name: 'Brief of gesproken reactie invoeren', level: 1 }).waitFor();
  await accessible(page, 'the letters page');
  await page.getByLabel('Naam van de inwoner').fill('Piet Jansen');
  await page.getByLabel('Over welke tekst (optioneel)').fill('bomen');
  await page.getByLabel('De reactie', { exact: true }).fill('Liever linden dan platanen, schrijft Piet in zijn brief.');
  await page.getByRole('button', { name: 'Reactie invoeren' }).click();
  await page.getByRole('status').filter({ hasText: 'opgeslagen' }).waitFor();
  // A passage that is not in the article is refused with a sentence, and the form keeps what was typed.
  await page.getByLabel('Naam van de inwoner').fill('Kees');
  await page.getByLabel('Over welke tekst (optioneel)').fill('struiken');
  await page.getByLabel('De reactie', { exact: true }).fill('Ook struiken graag.');
  await page.getByRole('button', { name: 'Reactie invoeren' }).click();
  await page.getByRole('alert').filter({ hasText: 'staan niet in het artikel' }).waitFor();
  assert.equal(await page.getByLabel('De reactie', { exact: true }).inputValue(), 'Ook struiken graag.');

  await page.goto(`${base}/desk/articles/${s.drafted.article}`);
  await page.getByRole('heading', { name: 'Reactie van Piet Jansen (ingevoerd door Fenna)' }).waitFor();
  await shot(page, 'article-facilitator');
});

test('the facilitator hides a contribution with a reason and shows it again', async () => {
  const page = s.fennaPage;
  const letter = page.locator('article.thread').filter({ hasText: 'Piet Jansen' });
  await letter.getByLabel('Reden om te verbergen (die ziet iedereen)').fill('Dubbel ingevoerd');
  await letter.getByRole('button', { name: 'Verbergen' }).click();
  await page.getByText('Verborgen door de facilitator. Reden: Dubbel ingevoerd').waitFor();
  assert.equal(await page.getByText('Liever linden dan platanen').count(), 0, 'the hidden text is not shown');
  await accessible(page, 'an article with a hidden contribution');
  const hidden = page.locator('article.thread').filter({ hasText: 'Dubbel ingevoerd' });
  await hidden.getByLabel('Reden om weer te tonen (die ziet iedereen)').fill('Toch niet dubbel');
  await hidden.getByRole('button', { name: 'Weer tonen' }).click();
  await page.getByText('Liever linden dan platanen').waitFor();
});

test('the facilitator names a version; a drafter changes the text; the comparison shows what changed', async () => {
  const page = s.fennaPage;
  await page.getByRole('link', { name: 'Versies' }).click();
  await page.getByRole('heading', { name: 'Versies van de tekst', level: 1 }).waitFor();
  await page.getByLabel('De tekst van nu een naam geven').fill('Concept voor inspraak');
  await page.getByRole('button', { name: 'Naam geven' }).click();
  await page.getByRole('status').filter({ hasText: 'naam gekregen' }).waitFor();
  await page.getByRole('link', { name: 'Concept voor inspraak', exact: true }).waitFor();
  await accessible(page, 'the versions page');

  // Anna signs in at the desk and rewrites a word.
  const { context, page: anna } = await person();
  await anna.goto(s.anna);
  await anna.getByRole('button', { name: 'Inloggen' }).click();
  await anna.goto(`${base}/desk/articles/${s.drafted.article}`);
  await anna.getByLabel('De tekst van dit artikel aanpassen').fill('De gemeente plant in iedere straat bomen.');
  await anna.getByRole('button', { name: 'Tekst opslaan' }).click();
  await anna.getByRole('status').filter({ hasText: 'Opgeslagen' }).waitFor();
  await context.close();

  await page.goto(`${base}/desk/versions`);
  await page.getByRole('link', { name: 'vergelijk „Concept voor inspraak” met nu' }).click();
  await page.getByRole('heading', { name: 'Twee versies vergelijken', level: 1 }).waitFor();
  assert.equal((await page.locator('del').allTextContents()).filter((t) => t.includes('elke')).length, 1);
  assert.equal((await page.locator('ins').allTextContents()).filter((t) => t.includes('iedere')).length, 1);
  await accessible(page, 'the comparison of two versions');
  await shot(page, 'versions-diff');
  // The named version reads as it was.
  await page.goto(`${base}/desk/versions`);
  await page.getByRole('link', { name: 'Concept voor inspraak', exact: true }).click();
  await page.getByText('De gemeente plant in elke straat bomen.').waitFor();
  await accessible(page, 'a named version');
});

test('the weekly check-in shows what waits, per article and per official, and who has not synced', async () => {
  const page = s.fennaPage;
  await page.getByRole('link', { name: 'Check-in' }).click();
  await page.getByRole('heading', { name: 'Wekelijkse check-in', level: 1 }).waitFor();
  // Piet's letter waits for an answer; Anna's comment was answered.
  const perArticle = page.locator('table').filter({ hasText: 'Per artikel' });
  await perArticle.getByRole('row', { name: /Artikel 1: Bomen/ }).waitFor();
  assert.match(await perArticle.getByRole('row', { name: /Artikel 1: Bomen/ }).textContent(), /\d+\s*sinds vandaag/);
  const olga = page.locator('table').filter({ hasText: 'Per ambtenaar' }).getByRole('row', { name: /Olga de Vries/ });
  assert.match(await olga.textContent(), /Olga de Vries\s*1\s*1\s*\d{4}-\d{2}-\d{2}/);
  assert.equal(await page.locator('svg.chart').count(), 1, 'the chart is drawn');
  assert.equal(await page.locator('svg.chart rect').count(), 1, 'one bar for one article');
  // Olga's desk does not count as a phone sync; Anna's phone does.
  const quiet = page.locator('section').filter({ hasText: 'Lang niet gesynchroniseerd' });
  await quiet.getByText(/Olga de Vries \(ambtenaar\): niet gezien/).waitFor();
  assert.equal(await quiet.getByText(/^Anna/).count(), 0, 'Anna synced today');
  await accessible(page, 'the check-in page');
  await shot(page, 'checkin');

  await page.getByRole('button', { name: 'Check-in afronden' }).click();
  await page.getByRole('status').filter({ hasText: 'afgerond' }).waitFor();
  await page.getByText(/Vorige check-in: \d{4}-\d{2}-\d{2}/).waitFor();
  await page.getByText('0 nieuwe formele antwoorden').waitFor();
});

test('the facilitator moves the process to the consultation phase', async () => {
  const page = s.fennaPage;
  await page.getByLabel('inspraak').check();
  await page.getByRole('button', { name: 'Fase wijzigen' }).click();
  await page.getByText('Het proces is nu in de fase: inspraak').waitFor();
  await page.goto(`${base}/desk`);
  await page.getByRole('definition').filter({ hasText: 'inspraak' }).waitFor();
});

test('the facilitator exports the nota van beantwoording; it holds the answer, without residents\' names', async () => {
  const page = s.fennaPage;
  await page.getByRole('link', { name: 'Nota' }).click();
  await page.getByRole('heading', { name: 'Nota van beantwoording', level: 1 }).waitFor();
  await accessible(page, 'the export page');
  await page.getByRole('link', { name: 'Om af te drukken (HTML)' }).first().click();
  await page.getByRole('heading', { name: 'Nota van beantwoording: Groen in de Schilderswijk' }).waitFor();
  const nota = await page.locator('main').textContent();
  assert.match(nota, /Reactie van inwoner 1/);
  assert.match(nota, /deels overgenomen/);
  assert.match(nota, /De Jacob Catsstraat krijgt bomen in 2027/);
  assert.match(nota, /\(ambtenaar\)/);
  assert.doesNotMatch(nota, /Anna|Piet Jansen|Olga/, 'no resident or official is named');
  await accessible(page, 'the printable nota');
  await shot(page, 'nota');
  // Printing hides the menu and the language form.
  await page.emulateMedia({ media: 'print' });
  assert.equal(await page.locator('header nav').isVisible(), false);
  await page.emulateMedia({ media: 'screen' });

  let r = await page.request.get(`${base}/desk/export/nota.md`);
  assert.equal(r.status(), 200);
  assert.match(r.headers()['content-disposition'], /nota-van-beantwoording\.md/);
  const md = await r.text();
  assert.match(md, /^# Nota van beantwoording: Groen in de Schilderswijk/);
  assert.match(md, /\*\*deels overgenomen\*\* \(ambtenaar\): De Jacob Catsstraat krijgt bomen in 2027/);
  r = await page.request.get(`${base}/desk/export/nota.csv`);
  const csv = await r.text();
  assert.match(csv.split('\n')[0], /^nummer,artikel,van,soort/);
  assert.match(csv, /inwoner 1/);
  assert.doesNotMatch(csv, /Anna/);
  // The facilitator may switch names on.
  r = await page.request.get(`${base}/desk/export/nota.csv?names=1`);
  assert.match(await r.text(), /Anna/);
  // An official may export, but not with names.
  r = await s.olgaPage.request.get(`${base}/desk/export/nota.csv?names=1`);
  assert.equal(r.status(), 403);
  r = await s.olgaPage.request.get(`${base}/desk/export/nota.csv`);
  assert.equal(r.status(), 200);
});

test('forms without the session\'s secret, without a session, or from another site are refused', async () => {
  const page = s.olgaPage;
  await page.goto(`${base}/desk/members`);
  const csrf = await page.locator('input[name=csrf]').first().inputValue();
  assert.equal(csrf.length, 128);

  // The official's own cookie, but no form secret.
  let r = await page.request.post(`${base}/desk/members`, { form: { name: 'X', role: 'drafter' } });
  assert.equal(r.status(), 400, 'a form without its secret is incomplete');
  r = await page.request.post(`${base}/desk/members`, { form: { csrf: 'f'.repeat(128), name: 'X', role: 'drafter' } });
  assert.equal(r.status(), 403);
  assert.match(await r.text(), /niet van uw eigen pagina/);

  // The right secret, but the official may not invite: refused with a sentence.
  r = await page.request.post(`${base}/desk/members`, { form: { csrf, name: 'X', role: 'drafter' } });
  assert.equal(r.status(), 403);
  assert.match(await r.text(), /facilitator/i);

  // No cookie at all.
  const { context: stranger } = await person();
  r = await stranger.request.post(`${base}/desk/members`, { form: { csrf, name: 'X', role: 'drafter' } });
  assert.equal(r.status(), 403);
  assert.match(await r.text(), /niet \(meer\) ingelogd/);
  await stranger.close();

  // Another site's page posting with the official's cookie.
  r = await page.request.post(`${base}/desk/members`, {
    form: { csrf, name: 'X', role: 'drafter' },
    headers: { Origin: 'http://elders.example' },
  });
  assert.equal(r.status(), 403);
  assert.match(await r.text(), /niet van een pagina van Klad/);

  // Nobody was invited by any of these.
  await s.fennaPage.goto(`${base}/desk/members`);
  assert.equal(await s.fennaPage.getByRole('cell', { name: 'X', exact: true }).count(), 0);
});

test('a person reads the desk in English after choosing it', async () => {
  const page = s.olgaPage;
  await page.goto(`${base}/desk/inbox`);
  await page.getByLabel('Taal').selectOption('en');
  await page.getByRole('button', { name: 'Kies taal' }).click();
  await page.getByRole('heading', { name: 'To answer', level: 1 }).waitFor();
  assert.equal(await page.locator('html').getAttribute('lang'), 'en');
  await accessible(page, 'the inbox in English');
  await page.goto(`${base}/desk`);
  await page.getByText('Signed in as Olga de Vries').waitFor();
  await page.getByRole('link', { name: 'Articles', exact: true }).click();
  await page.getByRole('heading', { name: 'Articles', level: 1 }).waitFor();
  await accessible(page, 'the list of articles');
});

test('signing out ends the session; the old cookie no longer signs anyone in', async () => {
  const page = s.olgaPage;
  const old = (await page.context().cookies()).find((c) => c.name === 'klad_desk');
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('heading', { name: 'Welcome to Klad' }).waitFor();
  const { context, page: thief } = await person();
  await context.addCookies([old]);
  await thief.goto(`${base}/desk/inbox`);
  await thief.getByRole('heading', { name: 'Welkom bij Klad' }).waitFor();
  await accessible(thief, 'the welcome page');
  await context.close();
});

test('a revoked, a damaged and an unknown invitation each get a clear page', async () => {
  // The process id, from the claims of the invitation (PASETO v4.public:
  // the JSON claims followed by a 64-byte signature).
  const signed = Buffer.from(s.olga.split('/desk/in/v4.public.')[1], 'base64url');
  const processId = JSON.parse(signed.subarray(0, signed.length - 64).toString('utf8')).pid;
  assert.ok(processId, 'the invitation names its process');
  execFileSync(serverBin, ['--data', path.join(data, 'server'), 'members', 'revoke', '--process', processId, '--member', 'Olga de Vries', '--json'], { encoding: 'utf8' });

  const { page, context } = await person();
  let r = await page.goto(s.olga);
  assert.equal(r.status(), 403);
  await page.getByRole('heading', { name: 'Deze uitnodiging is ingetrokken' }).waitFor();
  await accessible(page, 'the revoked invitation');
  await shot(page, 'revoked');

  r = await page.goto(`${base}/desk/in/v4.public.niet-echt`);
  assert.equal(r.status(), 403);
  await page.getByRole('heading', { name: 'Deze link werkt niet' }).waitFor();
  await accessible(page, 'the damaged invitation');
  await context.close();

  // The facilitator's session lives on; an official signed in before the
  // revocation would have been signed out (checked on every request).
  await s.fennaPage.goto(`${base}/desk/members`);
  await s.fennaPage.getByRole('heading', { name: 'Deelnemers', level: 1 }).waitFor();
});

test('pages that do not exist say so in a sentence', async () => {
  const { page, context } = await person();
  const r = await page.goto(`${base}/desk/nergens`);
  assert.equal(r.status(), 404);
  await page.getByText('Op dit adres staat niets').waitFor();
  await accessible(page, 'the not-found page');
  await context.close();
});
