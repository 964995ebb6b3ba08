# The web desk's texts in English (plain language).
# Every message is also in ../nl/desk.ftl; a test keeps them together.

skip-to-content = Skip to the content
nav-label = Main menu
nav-home = Overview
nav-articles = Articles
nav-inbox = To answer
nav-waiting = Waiting for an answer
nav-members = Members
signed-in-as = Signed in as { $name }
sign-out = Sign out
language-label = Language
language-choose = Choose language
back-home = Back to the overview
back-articles = Back to the articles

role-drafter = resident (drafter)
role-official = official
role-facilitator = facilitator
role-observer = observer
phase-drafting = drafting
phase-consultation = consultation
phase-final = closed

welcome-title = Welcome to Klad
welcome-intro = Klad is where residents write the text of an ordinance together, and where the municipality responds to it.
welcome-how = To sign in, open the invitation link the facilitator gave you. No link? Ask your process's facilitator for an invitation.

home-phase = Phase
home-role = Your role
home-articles = Articles
home-open = Contributions waiting for an answer
home-next = What can you do?
home-read-articles = Read the articles and the contributions
home-answer = Answer the contributions waiting for you
home-invite = Invite someone

start-title = Open the first process
start-intro = This server has no process yet. Give the process a title and the name of the facilitator who will run it. You then get an invitation link for that facilitator. This page works only once.
start-process-title = Title of the ordinance
start-facilitator = Name of the facilitator
start-submit = Open the process
start-need-title = Give the process a title, for example the name of the ordinance.
start-need-facilitator = Fill in the facilitator's name. Everyone sees it next to what the facilitator writes.
start-used = This link has been used already or is no longer valid: the first process is open. Ask its facilitator for an invitation.
started-title = The process “{ $title }” is open
started-intro = This is the invitation for { $name }, the facilitator. Give this link to { $name } only: whoever has it can sign in as the facilitator.

invited-title = Invitation for { $name }
invited-intro = They take part as { $role }. Give this link or QR code to this person only.
invited-link = Invitation link
invited-once = Keep the link safe: it is shown here only once. If it is lost, make a new invitation.
invited-qr = Scan this code with the phone to open the invitation.
invited-qr-label = QR code with the invitation link for { $name }
expires-on = The link is valid until { $date }.

sign-in-title = Sign in
sign-in-intro = You are opening an invitation to Klad. Press the button to sign in on this computer. Using someone else's computer? Sign out when you are done.
sign-in-submit = Sign in

invitation-expired-title = This invitation has expired
invitation-expired = The invitation is no longer valid. Ask the facilitator for a new invitation.
invitation-revoked-title = This invitation was withdrawn
invitation-revoked = The facilitator withdrew this invitation or gave you a new one. Use the newest invitation, or ask the facilitator for a new one.
invitation-invalid-title = This link does not work
invitation-invalid = The link is incomplete or not from this server. Copy the whole link from your invitation and try again.
invitation-unknown-title = This invitation belongs to nobody any more
invitation-unknown = The invitation names a member or process this server does not know. Ask the facilitator for a new invitation.

articles-title = Articles
articles-none = No articles have been written yet.
threads-count = { $n ->
    [0] no contributions
    [one] 1 contribution
   *[other] { $n } contributions
}
article-missing = This article does not exist (any more). Choose an article from the list.
article-text = Text
article-threads = Contributions
article-no-threads = Nobody has responded to this article yet.
passage-link = to contribution { $n }

thread-comment-by = Comment by { $name }
thread-suggestion-by = Suggested wording by { $name }
thread-passage = About the text:
thread-orphaned = This text is no longer in the article. The contribution was about:
thread-wording = Suggested text:
thread-hidden = Hidden by the facilitator. Reason: { $reason }
hidden-text = (hidden by the facilitator)
reply-by = Reply by { $name }
answer-by = Formal answer by { $name }
status-open = waiting for an answer
status-answered = answered
status-resolved = resolved
status-hidden = hidden
answer-adopted = taken over
answer-partly-adopted = partly taken over
answer-not-adopted = not taken over
answer-noted = noted
days-waiting = { $n ->
    [0] since today
    [one] 1 day
   *[other] { $n } days
}

inbox-title = To answer
inbox-intro = Contributions still waiting for a formal answer, the oldest first.
inbox-empty = Nothing is waiting for an answer.
inbox-caption = { $n ->
    [one] 1 contribution is waiting for an answer
   *[other] { $n } contributions are waiting for an answer
}
inbox-waiting = Waiting
inbox-article = Article
inbox-from = From
inbox-what = Contribution

members-title = Members
members-caption = { $n ->
    [one] 1 member
   *[other] { $n } members
}
members-name = Name
members-role = Role
invite-title = Invite someone
invite-name = Name
invite-role = Role
invite-submit = Make the invitation
invite-bad-role = Choose a role: resident, official, facilitator or observer.
invite-need-name = Fill in a name. Everyone sees it next to what this person writes.

error-not-found = Not found
error-refused = Not allowed
error-bad-input = That did not work
error-failed = Something went wrong
not-found-sentence = There is nothing at this address. Go back to the overview.
refused-cross-site = This form did not come from a page of Klad, so it was refused. Open Klad itself and try again there.
refused-not-signed-in = You are not signed in (any more). Open your invitation link to sign in, then try again.
refused-csrf = This form has expired or did not come from your own page, so nothing was done. Reload the page and try again.
refused-form = The form was incomplete ({ $detail }). Reload the page and fill in everything.
refused-language = Choose Dutch or English.

answer-form-title = Give a formal answer
answer-reason = Reason (everyone sees it)
answer-submit = Save the answer
answer-need-status = Choose whether the contribution is taken over, partly taken over, not taken over or noted.
reply-label = Reply
reply-submit = Save the reply
saved = Saved. Everyone in the process sees it as soon as their phone or browser updates.
thread-missing = This contribution does not exist (any more). Go back to the article and choose one from the list.
edit-label = Change the text of this article
edit-submit = Save the text
hide-reason = Reason for hiding (everyone sees it)
hide-submit = Hide
unhide-reason = Reason for showing it again (everyone sees it)
unhide-submit = Show again

nav-checkin = Check-in
nav-letters = Enter a letter
checkin-title = Weekly check-in
checkin-waiting = What waits for an answer
checkin-chart-title = How long the oldest contribution per article has waited
checkin-chart-desc = One bar per article: the longer the bar, the longer its oldest contribution has waited for an answer. The number of days is written after the bar and in the table below.
checkin-chart-caption = Days the oldest contribution per article has waited.
checkin-per-article = Per article
checkin-open = Waiting
checkin-oldest = Oldest has waited
checkin-per-official = Per official
checkin-answers = Answers
checkin-answers-since = Since the last check-in
checkin-last-answer = Last answer
checkin-never = never
checkin-changed = What changed since the last check-in
checkin-since = Last check-in: { $date }.
checkin-first = This is your first check-in: everything counts as new.
checkin-articles-changed = { $n ->
    [one] 1 article was changed
   *[other] { $n } articles were changed
}
checkin-new-threads = { $n ->
    [one] 1 new comment or suggestion
   *[other] { $n } new comments and suggestions
}
checkin-new-replies = { $n ->
    [one] 1 new reply
   *[other] { $n } new replies
}
checkin-new-answers = { $n ->
    [one] 1 new formal answer
   *[other] { $n } new formal answers
}
checkin-done = Finish the check-in
checkin-done-saved = The check-in is finished. Next time you see what changed after it.
checkin-quiet = Not synced for long
checkin-quiet-intro = Members who were not connected in the past week. The server has kept track since { $date }.
checkin-quiet-none = Everyone was connected in the past week.
checkin-last-seen = last seen on { $date }
checkin-not-seen = not seen since the server started
checkin-phase = Phase of the process
checkin-phase-now = The process is now in the phase: { $phase }
checkin-phase-submit = Change the phase
phase-bad = Choose a phase: drafting, consultation or closed.
letters-title = Enter a letter or spoken contribution
letters-intro = For someone without a phone: enter their letter or spoken contribution here. Everyone sees that you entered it on their behalf.
letters-person = Name of the resident
letters-passage = About which text (optional)
letters-passage-hint = Copy the words from the article the contribution is about. Leave empty if it is about the whole article.
letters-text = The contribution
letters-submit = Enter the contribution
letters-saved = The contribution is saved and shown with its article.
letter-need-article = Choose the article the contribution is about.
letter-passage-missing = Those words are not in the article. Copy them exactly from the text, or leave the field empty.
entered-on-behalf = { $person } (entered by { $name })

nav-export = Report
export-title = Response report (nota van beantwoording)
export-intro = The text of the ordinance and the response report: per article, every contribution of the consultation, the municipality's answer with its reason, and what changed in the text because of it.
export-anonymous = Residents are not named (“resident 12”); officials and facilitators appear by their role.
export-html = For printing (HTML)
export-md = As Markdown
export-csv = As a table (CSV)
export-with-names = With names
export-with-names-intro = The municipality may decide to name the residents. Do so only if the residents know.
export-named = with names
export-refused = Only officials and facilitators can make the report.
export-names-refused = Only a facilitator can make the report with names.
export-file-stem = response-report
export-nota-title = Response report: { $title }
export-made-on = Made on { $date }.
export-text = Text of the ordinance
export-nota = Contributions and answers
export-resident = resident { $n }
export-comment-by = Comment by { $name }
export-suggestion-by = Suggested wording by { $name }
export-passage = About the text:
export-contribution = Contribution:
export-answer = The municipality's answer:
export-no-answer = no answer yet
export-change = Change in the text:
export-change-none = none
export-change-changed = “{ $was }” became “{ $now }”
export-change-removed = “{ $was }” was removed
export-change-accepted = the suggestion was taken over: “{ $wording }”
export-no-contributions = No contributions on this article.
export-elsewhere = Contributions on articles removed since
export-kind-comment = comment
export-kind-suggestion = suggested wording
export-col-number = number
export-col-article = article
export-col-who = from
export-col-kind = kind
export-col-passage = about the text
export-col-contribution = contribution
export-col-wording = suggested wording
export-col-answer = answer
export-col-reason = reason
export-col-answered-by = answered by
export-col-change = change in the text

nav-versions = Versions
versions-title = Versions of the text
versions-now = the text now
versions-end-of-day = the text at the end of { $date }
versions-bad-spec = This version does not exist. Choose a version from the list.
versions-named = Named versions
versions-named-none = No version has a name yet. A facilitator can name the text as it is now, for example “Draft for consultation”.
versions-named-by = { $date }, by { $name }
versions-compare-now = compare “{ $name }” with now
versions-name-label = Name the text as it is now
versions-name-submit = Name it
versions-saved = The version has its name.
versions-read = The text as it was
versions-which = Which version
versions-read-submit = Show the text
versions-text-title = { $name }
versions-back = Back to the versions
versions-diff-title = Compare two versions
versions-from = From
versions-to = To
versions-diff-submit = Compare
versions-diff-intro = From { $from } to { $to }.
versions-legend = How to read the changes:
versions-legend-removed = struck through was removed
versions-legend-added = underlined was added
versions-unchanged = This article did not change.
versions-removed-article = { $label } (removed)
comment-title = Respond to the text
comment-text = Your comment
comment-submit = Post the comment
suggest-wording = Suggested wording (for a suggestion)
suggest-submit = Post the suggestion
