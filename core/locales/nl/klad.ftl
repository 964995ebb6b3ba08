# De zinnen van Klad in het Nederlands (eenvoudig, taalniveau B1). Elke
# bericht-id is de code van een reden (klad_core::Reason::code), of een woord
# dat in zinnen gebruikt wordt (role-, roles-, phase-, action-, doc-, list-or).
# Elk bericht hier staat ook in ../en/klad.ftl; een test controleert dat beide
# dezelfde ids hebben en dat elke zin met al zijn gegevens ingevuld wordt.

## Woorden in zinnen

# Een rol, zoals in "Als { $role } mag u ...".
role-drafter = inwoner
role-official = ambtenaar
role-facilitator = facilitator
role-observer = meelezer
# Een rol in het meervoud, zoals in "alleen { $allowed }".
roles-drafter = inwoners
roles-official = ambtenaren
roles-facilitator = facilitators
roles-observer = meelezers
phase-drafting = schrijven
phase-consultation = inspraak
phase-final = afronding
# Wat een handeling is, na "dit mag u niet:".
action-edit-text = de tekst van de artikelen wijzigen
action-comment = een reactie geven op een stuk tekst
action-reply = antwoorden in een gesprek
action-suggest = een andere tekst voorstellen
action-decide-suggestion = een tekstvoorstel overnemen of afwijzen
action-answer = een formeel antwoord geven
action-resolve = een gesprek afsluiten of weer openen
action-hide = een bijdrage verbergen of weer tonen
action-enter-on-behalf = een bijdrage invoeren namens iemand anders
action-mark-read = bijdragen als gelezen markeren
action-change-phase = het proces naar de volgende fase brengen
action-manage-members = deelnemers uitnodigen of hun apparaten beheren
action-name-version = een versie van de tekst een naam geven
doc-process = procesdocument
doc-text = tekstdocument
doc-contributions = document met bijdragen
# Een opsomming: "inwoners, ambtenaren of facilitators".
list-or = { $init } of { $last }

## De regels

role-may-not = Als { $role } mag u dit niet: { $action }. Alleen { $allowed } mogen dat.
phase-closed = Dit kan nu niet: { $action }. Het proces is in de fase { $phase }. Dit kan alleen in de fase { $allowed }.
not-your-contributions = Deze bijdragen zijn van iemand anders. U kunt alleen uw eigen bijdragen schrijven.

## (Nog) niet op dit apparaat

contributions-not-here = Deze bijdragen staan nog niet op dit apparaat. Maak eerst verbinding om ze op te halen.
own-contributions-not-here = Uw eigen bijdragen staan nog niet op dit apparaat. Maak één keer verbinding om ze op te halen.
version-not-here = Die versie van het { $kind } staat niet op dit apparaat: er ontbreken wijzigingen. Lees de tekst opnieuw en probeer het nog een keer.
no-such-member = Er is geen deelnemer { $member } in het proces "{ $process }". Vraag een facilitator om een uitnodiging.
process-not-here = Het procesdocument staat nog niet helemaal op dit apparaat. Maak verbinding om het op te halen.
no-such-thread = Er is geen gesprek { $id } op dit apparaat. Misschien is het nog niet opgehaald. Controleer het nummer of maak eerst verbinding.
no-such-contribution = Er is geen bijdrage { $id } op dit apparaat. Misschien is die nog niet opgehaald. Controleer het nummer of maak eerst verbinding.
suggestion-passage-not-here = Het stuk tekst van dit tekstvoorstel staat nog niet op dit apparaat. Maak eerst verbinding en neem het voorstel daarna over.
text-not-here = De tekst van dit proces staat nog niet op dit apparaat. Maak eerst verbinding om de tekst op te halen.
no-such-article = Er is geen artikel { $article } in deze tekst. Misschien is het nog niet opgehaald. Controleer het nummer of maak eerst verbinding.
article-removed = Het artikel { $article } is uit de tekst gehaald. U kunt het niet meer wijzigen en er niet meer op reageren.
no-article-to-place-after = Er is geen artikel { $article } om dit artikel achter te zetten. Misschien is het weggehaald. Kies een andere plek.
no-such-named-version = Er is geen versie met naam { $id } in dit proces. Kies een versie uit de lijst.

## Verkeerde invoer

passage-outside-article = Het stuk van teken { $start } tot { $end } valt niet binnen het artikel, of is leeg. Het artikel is { $len } tekens lang. Selecteer een stuk tekst van het artikel.
range-reversed = Het stuk { $start }..{ $end } eindigt voordat het begint. Selecteer de tekst opnieuw.
edit-outside-field = De wijziging bij teken { $pos } ({ $delete } tekens weg) valt buiten { $field ->
        [heading] de kop
       *[body] de tekst
    }, die { $len } tekens lang is. Vernieuw het scherm en probeer het opnieuw.
empty-title = Een proces heeft een titel nodig. Geef de verordening een naam.
empty-member-name = Een deelnemer heeft een naam nodig. Anderen zien die naam bij alles wat de deelnemer schrijft. Vul een naam in.
empty-comment = De reactie is leeg. Schrijf eerst iets en verstuur de reactie dan.
empty-reply = Het antwoord is leeg. Schrijf eerst iets en verstuur het antwoord dan.
empty-answer-reason = De motivering van het formele antwoord is leeg. Schrijf eerst een motivering.
empty-hide-reason = De reden om te verbergen is leeg. Schrijf eerst een reden.
empty-on-behalf-name = De naam van de persoon namens wie u dit invoert is leeg. Vul eerst de naam in.
empty-version-name = De naam van de versie is leeg. Geef de versie een naam die mensen herkennen.
already-member = { $member } doet al mee aan dit proces. Nodig een nieuwe deelnemer uit met een nieuw nummer.
device-taken = Dit apparaat hoort al bij { $owner }. Elk apparaat heeft een eigen nummer nodig.
device-key-changed = Dit apparaat is al aangemeld met een andere sleutel. Een apparaat houdt zijn sleutel. Gebruik een nieuw apparaatnummer met een nieuwe sleutel.
phase-not-next = Het proces is in de fase { $phase } en kan alleen naar de fase { $next }, niet naar { $to }.
phase-is-last = Het proces is in de fase { $phase }. Dat is de laatste fase; het kan niet naar { $to }.
not-a-thread = { $id } is geen reactie of tekstvoorstel en begint dus geen gesprek. Antwoord op de eerste bijdrage van het gesprek.
suggestion-unchanged = De voorgestelde tekst is gelijk aan de huidige tekst. Verander eerst iets en stel het dan voor.
not-a-suggestion = { $id } is een reactie, geen tekstvoorstel. Alleen tekstvoorstellen kunt u overnemen of afwijzen.
suggestion-passage-deleted = Het stuk tekst van dit tekstvoorstel is weggehaald. Het voorstel kan daarom niet meer worden overgenomen. Wijs het af of neem de tekst zelf over.
article-after-itself = Een artikel kan niet achter zichzelf staan. Kies een ander artikel of het begin.
write-in-progress = Er wordt nog een wijziging opgeslagen. Meld die eerst af met `written` en doe daarna de volgende.
typing-superseded = De tekst is veranderd sinds u hem las. Wat u typte is bewaard. Lees de tekst opnieuw en typ verder in wat u nu ziet.
unknown-language = Klad heeft geen berichten in de taal "{ $given }". Kies nl (Nederlands) of en (Engels).

## Beschadigde of vreemde documenten

not-klad-document = Dit is geen { $kind } van Klad: het kopje van Klad ontbreekt. Controleer of het juiste documentnummer is gebruikt.
wrong-document-kind = Dit is een document van Klad van de soort "{ $found }", geen { $expected }. Controleer of het juiste documentnummer is gebruikt.
newer-schema = Dit { $kind } is gemaakt met een nieuwere versie van Klad (schemaversie { $found }; deze versie kent tot en met { $supported }). Werk Klad bij om het te openen.
document-empty = Het { $kind } is leeg (0 bytes). Er is dus niets om te openen. Haal het opnieuw op van de server of zet een reservekopie terug.
document-unreadable = Het { $kind } kan niet worden gelezen ({ $detail }). Haal het opnieuw op van de server of zet een reservekopie terug.
changes-unreadable = De ontvangen wijzigingen in het { $kind } kunnen niet worden gelezen ({ $detail }). Er is niets veranderd. Maak opnieuw verbinding.
unexpected-structure = Het document is niet opgebouwd zoals Klad verwacht ({ $detail }). Haal het opnieuw op van de server of zet een reservekopie terug.
no-valid-role = Het procesdocument heeft geen geldige rol voor { $member }. Haal het opnieuw op van de server of zet een reservekopie terug.
no-member-list = Het procesdocument heeft geen lijst met deelnemers. Haal het opnieuw op van de server of zet een reservekopie terug.
member-entry-damaged = De gegevens van deelnemer { $member } in het procesdocument zijn beschadigd. Haal het opnieuw op van de server of zet een reservekopie terug.
article-damaged = Het artikel { $article } heeft geen kop of tekst. Haal de tekst opnieuw op van de server of zet een reservekopie terug.
text-not-editable = De tekst kan niet worden gewijzigd ({ $detail }). Haal de tekst opnieuw op van de server of zet een reservekopie terug.
