# De teksten van de webbalie, in het Nederlands (taalniveau B1).
# Elk bericht staat ook in ../en/desk.ftl; een test bewaakt dat.

skip-to-content = Naar de inhoud
nav-label = Hoofdmenu
nav-home = Overzicht
nav-articles = Artikelen
nav-inbox = Te beantwoorden
nav-waiting = Wacht op antwoord
nav-members = Deelnemers
signed-in-as = Ingelogd als { $name }
sign-out = Uitloggen
language-label = Taal
language-choose = Kies taal
back-home = Terug naar het overzicht
back-articles = Terug naar de artikelen

role-drafter = inwoner (schrijver)
role-official = ambtenaar
role-facilitator = facilitator
role-observer = meelezer
phase-drafting = schrijven
phase-consultation = inspraak
phase-final = afgerond

welcome-title = Welkom bij Klad
welcome-intro = Klad is de plek waar inwoners samen de tekst van een verordening schrijven, en waar de gemeente daarop reageert.
welcome-how = Om in te loggen opent u de uitnodigingslink die u van de facilitator heeft gekregen. Heeft u geen link? Vraag de facilitator van uw proces om een uitnodiging.

home-phase = Fase
home-role = Uw rol
home-articles = Artikelen
home-open = Reacties die op een antwoord wachten
home-next = Wat kunt u doen?
home-read-articles = De artikelen en de reacties lezen
home-answer = Reacties beantwoorden die op u wachten
home-invite = Iemand uitnodigen

start-title = Het eerste proces openen
start-intro = Deze server heeft nog geen proces. Geef het proces een titel en vul de naam in van de facilitator die het gaat begeleiden. U krijgt daarna een uitnodigingslink voor die facilitator. Deze pagina werkt maar één keer.
start-process-title = Titel van de verordening
start-facilitator = Naam van de facilitator
start-submit = Proces openen
start-need-title = Geef het proces een titel, bijvoorbeeld de naam van de verordening.
start-need-facilitator = Vul de naam van de facilitator in. Die naam ziet iedereen bij wat de facilitator schrijft.
start-used = Deze link is al gebruikt of is niet meer geldig. Het eerste proces is al geopend. Vraag de facilitator om een uitnodiging.
started-title = Het proces „{ $title }” is geopend
started-intro = Dit is de uitnodiging voor { $name }, de facilitator. Geef deze link alleen aan { $name }: wie de link heeft, kan als facilitator inloggen.

invited-title = Uitnodiging voor { $name }
invited-intro = { $name } doet mee als { $role }. Geef deze link of QR-code alleen aan deze persoon.
invited-link = Uitnodigingslink
invited-once = Bewaar de link goed: u ziet hem hier maar één keer. Bent u hem kwijt, maak dan een nieuwe uitnodiging.
invited-qr = Scan deze code met de telefoon om de uitnodiging te openen.
invited-qr-label = QR-code met de uitnodigingslink voor { $name }
expires-on = De link is geldig tot { $date }.

sign-in-title = Inloggen
sign-in-intro = U opent een uitnodiging voor Klad. Klik op de knop om in te loggen op deze computer. Gebruikt u een computer van iemand anders? Log dan na afloop uit.
sign-in-submit = Inloggen

invitation-expired-title = Deze uitnodiging is verlopen
invitation-expired = De uitnodiging is niet meer geldig. Vraag de facilitator om een nieuwe uitnodiging.
invitation-revoked-title = Deze uitnodiging is ingetrokken
invitation-revoked = De facilitator heeft deze uitnodiging ingetrokken of u een nieuwe gegeven. Gebruik de nieuwste uitnodiging, of vraag de facilitator om een nieuwe.
invitation-invalid-title = Deze link werkt niet
invitation-invalid = De link is niet compleet of niet van deze server. Kopieer de hele link uit uw uitnodiging en probeer het opnieuw.
invitation-unknown-title = Deze uitnodiging hoort bij niemand meer
invitation-unknown = De uitnodiging noemt een deelnemer of proces dat deze server niet kent. Vraag de facilitator om een nieuwe uitnodiging.

articles-title = Artikelen
articles-none = Er zijn nog geen artikelen geschreven.
threads-count = { $n ->
    [0] geen reacties
    [one] 1 reactie
   *[other] { $n } reacties
}
article-missing = Dit artikel bestaat niet (meer). Kies een artikel uit de lijst.
article-text = Tekst
article-threads = Reacties
article-no-threads = Er zijn nog geen reacties op dit artikel.
passage-link = naar reactie { $n }

thread-comment-by = Reactie van { $name }
thread-suggestion-by = Tekstvoorstel van { $name }
thread-passage = Over de tekst:
thread-orphaned = Deze tekst staat niet meer in het artikel. De reactie ging over:
thread-wording = Voorgestelde tekst:
thread-hidden = Verborgen door de facilitator. Reden: { $reason }
hidden-text = (verborgen door de facilitator)
reply-by = Antwoord van { $name }
answer-by = Formeel antwoord van { $name }
status-open = wacht op antwoord
status-answered = beantwoord
status-resolved = afgehandeld
status-hidden = verborgen
answer-adopted = overgenomen
answer-partly-adopted = deels overgenomen
answer-not-adopted = niet overgenomen
answer-noted = voor kennisgeving aangenomen
days-waiting = { $n ->
    [0] sinds vandaag
    [one] 1 dag
   *[other] { $n } dagen
}

inbox-title = Te beantwoorden
inbox-intro = Reacties die nog op een formeel antwoord wachten. De oudste staat bovenaan.
inbox-empty = Er wacht niets op een antwoord.
inbox-caption = { $n ->
    [one] 1 reactie wacht op een antwoord
   *[other] { $n } reacties wachten op een antwoord
}
inbox-waiting = Wacht al
inbox-article = Artikel
inbox-from = Van
inbox-what = Reactie

members-title = Deelnemers
members-caption = { $n ->
    [one] 1 deelnemer
   *[other] { $n } deelnemers
}
members-name = Naam
members-role = Rol
invite-title = Iemand uitnodigen
invite-name = Naam
invite-role = Rol
invite-submit = Uitnodiging maken
invite-bad-role = Kies een rol: inwoner, ambtenaar, facilitator of meelezer.
invite-need-name = Vul een naam in. Die naam ziet iedereen bij wat deze persoon schrijft.

error-not-found = Niet gevonden
error-refused = Niet toegestaan
error-bad-input = Dat ging niet
error-failed = Er ging iets mis
not-found-sentence = Op dit adres staat niets. Ga terug naar het overzicht.
refused-cross-site = Dit formulier kwam niet van een pagina van Klad en is daarom geweigerd. Open Klad zelf en probeer het daar opnieuw.
refused-not-signed-in = U bent niet (meer) ingelogd. Open uw uitnodigingslink om in te loggen en probeer het daarna opnieuw.
refused-csrf = Dit formulier is verlopen of kwam niet van uw eigen pagina, en is daarom niet verwerkt. Laad de pagina opnieuw en probeer het nog eens.
refused-form = Het formulier was niet compleet ({ $detail }). Laad de pagina opnieuw en vul alles in.
refused-language = Kies Nederlands of Engels.

answer-form-title = Formeel antwoord geven
answer-reason = Reden (die ziet iedereen)
answer-submit = Antwoord opslaan
answer-need-status = Kies of de reactie wordt overgenomen, deels overgenomen, niet overgenomen of voor kennisgeving aangenomen.
reply-label = Reageren
reply-submit = Reactie opslaan
saved = Opgeslagen. Iedereen in het proces ziet het zodra hun telefoon of browser bijwerkt.
thread-missing = Deze reactie bestaat niet (meer). Ga terug naar het artikel en kies een reactie uit de lijst.
edit-label = De tekst van dit artikel aanpassen
edit-submit = Tekst opslaan
hide-reason = Reden om te verbergen (die ziet iedereen)
hide-submit = Verbergen
unhide-reason = Reden om weer te tonen (die ziet iedereen)
unhide-submit = Weer tonen

nav-checkin = Check-in
nav-letters = Brief invoeren
checkin-title = Wekelijkse check-in
checkin-waiting = Wat wacht op een antwoord
checkin-chart-title = Hoe lang de oudste reactie per artikel wacht
checkin-chart-desc = Per artikel een balk: hoe langer de balk, hoe langer de oudste reactie op een antwoord wacht. Het aantal dagen staat achter de balk en in de tabel hieronder.
checkin-chart-caption = Dagen dat de oudste reactie per artikel wacht.
checkin-per-article = Per artikel
checkin-open = Wachten
checkin-oldest = Oudste wacht al
checkin-per-official = Per ambtenaar
checkin-answers = Antwoorden
checkin-answers-since = Sinds de vorige check-in
checkin-last-answer = Laatste antwoord
checkin-never = nog nooit
checkin-changed = Wat er veranderde sinds de vorige check-in
checkin-since = Vorige check-in: { $date }.
checkin-first = Dit is uw eerste check-in: alles telt als nieuw.
checkin-articles-changed = { $n ->
    [one] 1 artikel is aangepast
   *[other] { $n } artikelen zijn aangepast
}
checkin-new-threads = { $n ->
    [one] 1 nieuwe reactie of tekstvoorstel
   *[other] { $n } nieuwe reacties en tekstvoorstellen
}
checkin-new-replies = { $n ->
    [one] 1 nieuw antwoord in een gesprek
   *[other] { $n } nieuwe antwoorden in gesprekken
}
checkin-new-answers = { $n ->
    [one] 1 nieuw formeel antwoord
   *[other] { $n } nieuwe formele antwoorden
}
checkin-done = Check-in afronden
checkin-done-saved = De check-in is afgerond. De volgende keer ziet u wat er daarna veranderde.
checkin-quiet = Lang niet gesynchroniseerd
checkin-quiet-intro = Deelnemers die de afgelopen week niet verbonden waren. De server houdt dit bij sinds { $date }.
checkin-quiet-none = Iedereen was de afgelopen week verbonden.
checkin-last-seen = laatst gezien op { $date }
checkin-not-seen = niet gezien sinds de server startte
checkin-phase = Fase van het proces
checkin-phase-now = Het proces is nu in de fase: { $phase }
checkin-phase-submit = Fase wijzigen
phase-bad = Kies een fase: schrijven, inspraak of afgerond.
letters-title = Brief of gesproken reactie invoeren
letters-intro = Voor iemand zonder telefoon: voer hier een brief of een gesproken reactie in. Iedereen ziet dat u die namens deze persoon hebt ingevoerd.
letters-person = Naam van de inwoner
letters-passage = Over welke tekst (optioneel)
letters-passage-hint = Kopieer de woorden uit het artikel waar de reactie over gaat. Laat leeg als de reactie over het hele artikel gaat.
letters-text = De reactie
letters-submit = Reactie invoeren
letters-saved = De reactie is opgeslagen en staat bij het artikel.
letter-need-article = Kies het artikel waar de reactie over gaat.
letter-passage-missing = Die woorden staan niet in het artikel. Kopieer ze precies uit de tekst, of laat het veld leeg.
entered-on-behalf = { $person } (ingevoerd door { $name })

nav-export = Nota
export-title = Nota van beantwoording
export-intro = De tekst van de verordening en de nota van beantwoording: per artikel elke reactie uit de inspraak, het antwoord van de gemeente met de reden, en wat er daardoor in de tekst veranderde.
export-anonymous = Inwoners staan er zonder naam in („inwoner 12”), ambtenaren en facilitators met hun rol.
export-html = Om af te drukken (HTML)
export-md = Als Markdown
export-csv = Als tabel (CSV)
export-with-names = Met namen
export-with-names-intro = De gemeente kan besluiten de namen van inwoners te noemen. Doe dat alleen als de inwoners dat weten.
export-named = met namen
export-refused = Alleen ambtenaren en facilitators kunnen de nota maken.
export-names-refused = Alleen een facilitator kan de nota met namen maken.
export-file-stem = nota-van-beantwoording
export-nota-title = Nota van beantwoording: { $title }
export-made-on = Gemaakt op { $date }.
export-text = Tekst van de verordening
export-nota = Reacties en antwoorden
export-resident = inwoner { $n }
export-comment-by = Reactie van { $name }
export-suggestion-by = Tekstvoorstel van { $name }
export-passage = Over de tekst:
export-contribution = Reactie:
export-answer = Antwoord van de gemeente:
export-no-answer = nog geen antwoord
export-change = Wijziging in de tekst:
export-change-none = geen
export-change-changed = „{ $was }” werd „{ $now }”
export-change-removed = „{ $was }” is geschrapt
export-change-accepted = het voorstel is overgenomen: „{ $wording }”
export-no-contributions = Geen reacties op dit artikel.
export-elsewhere = Reacties op artikelen die zijn geschrapt
export-kind-comment = reactie
export-kind-suggestion = tekstvoorstel
export-col-number = nummer
export-col-article = artikel
export-col-who = van
export-col-kind = soort
export-col-passage = over de tekst
export-col-contribution = reactie
export-col-wording = voorgestelde tekst
export-col-answer = antwoord
export-col-reason = reden
export-col-answered-by = beantwoord door
export-col-change = wijziging in de tekst

nav-versions = Versies
versions-title = Versies van de tekst
versions-now = de tekst van nu
versions-end-of-day = de tekst aan het eind van { $date }
versions-bad-spec = Deze versie bestaat niet. Kies een versie uit de lijst.
versions-named = Versies met een naam
versions-named-none = Er is nog geen versie met een naam. Een facilitator kan de tekst van nu een naam geven, bijvoorbeeld „Concept voor inspraak”.
versions-named-by = { $date }, door { $name }
versions-compare-now = vergelijk „{ $name }” met nu
versions-name-label = De tekst van nu een naam geven
versions-name-submit = Naam geven
versions-saved = De versie heeft een naam gekregen.
versions-read = De tekst zoals die was
versions-which = Welke versie
versions-read-submit = Tekst tonen
versions-text-title = { $name }
versions-back = Terug naar de versies
versions-diff-title = Twee versies vergelijken
versions-from = Van
versions-to = Naar
versions-diff-submit = Vergelijken
versions-diff-intro = Van { $from } naar { $to }.
versions-legend = Zo ziet u wat er veranderde:
versions-legend-removed = doorgestreept is weggehaald
versions-legend-added = onderstreept is toegevoegd
versions-unchanged = Dit artikel is niet veranderd.
versions-removed-article = { $label } (geschrapt)
comment-title = Reageren op de tekst
comment-text = Uw reactie
comment-submit = Reactie plaatsen
suggest-wording = Voorgestelde tekst (voor een tekstvoorstel)
suggest-submit = Tekstvoorstel plaatsen
