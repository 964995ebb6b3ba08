# Klad's sentences in English. Each message id is a reason's code
# (klad_core::Reason::code), or a word used inside sentences (role-, roles-,
# phase-, action-, doc-, list-or). Every message here is also in
# ../nl/klad.ftl; a test checks that both have the same ids and that every
# reason's sentence formats with all its placeholders filled.

## Words inside sentences

# A role with its article, as in "As { $role }, ...".
role-drafter = a drafter
role-official = an official
role-facilitator = a facilitator
role-observer = an observer
# A role in the plural, as in "only { $allowed } can".
roles-drafter = drafters
roles-official = officials
roles-facilitator = facilitators
roles-observer = observers
phase-drafting = drafting
phase-consultation = consultation
phase-final = final
# What doing an action is called, after "you cannot".
action-edit-text = change the article text
action-comment = comment on a passage
action-reply = reply in a thread
action-suggest = suggest new wording
action-decide-suggestion = accept or reject a suggestion
action-answer = give a formal answer
action-resolve = resolve or reopen a thread
action-hide = hide or unhide a contribution
action-enter-on-behalf = enter a contribution on behalf of someone else
action-mark-read = mark contributions as read
action-change-phase = move the process to its next phase
action-manage-members = invite members or manage their devices
action-name-version = name a version of the text
doc-process = process document
doc-text = text document
doc-contributions = contributions document
# Joins a list: "drafters, officials or facilitators".
list-or = { $init } or { $last }

## The rules

role-may-not = As { $role }, you cannot { $action }: only { $allowed } can.
phase-closed = You cannot { $action } now: this process is in the { $phase } phase, and that is only possible in the { $allowed } phase.
not-your-contributions = That contributions document belongs to someone else; you can only write your own contributions.

## Not (yet) on this device

contributions-not-here = This contributions document has not arrived on this device yet; connect to sync it first.
own-contributions-not-here = Your contributions document is not on this device yet; connect once to sync it.
version-not-here = That version of the { $kind } is not on this device (it names changes this device does not have); read it again and retry.
no-such-member = There is no member { $member } in the process "{ $process }". Ask a facilitator for an invitation.
process-not-here = The process document has not fully arrived on this device yet; connect to sync it.
no-such-thread = There is no thread { $id } on this device. It may not have synced yet; check the id or sync first.
no-such-contribution = There is no contribution { $id } on this device. It may not have synced yet; check the id or sync first.
suggestion-passage-not-here = The passage this suggestion is about has not synced to this device yet; sync first, then accept it.
text-not-here = The text of this process has not arrived on this device yet; connect to sync it first.
no-such-article = There is no article with id { $article } in this text. It may not have synced yet; check the id or sync first.
article-removed = The article { $article } has been removed from the text; it can no longer be changed or commented on.
no-article-to-place-after = There is no article { $article } to place this one after; it may have been removed. Pick another place.
no-such-named-version = There is no named version { $id } in this process. Choose one from the list of named versions.

## Wrong input

passage-outside-article = The passage from character { $start } to { $end } is not a non-empty part of the article, which is { $len } characters long; select some text of the article.
range-reversed = The range { $start }..{ $end } ends before it starts; select the text again.
edit-outside-field = The edit at character { $pos } deleting { $delete } characters falls outside the { $field ->
        [heading] heading
       *[body] text
    }, which is { $len } characters long; refresh and try again.
empty-title = A process needs a title; give the ordinance a name.
empty-member-name = A member needs a name that others will see next to their words; give a non-empty name.
empty-comment = The comment is empty; write something before sending it.
empty-reply = The reply is empty; write something before sending it.
empty-answer-reason = The reason of the answer is empty; write something before sending it.
empty-hide-reason = The reason for hiding is empty; write something before sending it.
empty-on-behalf-name = The name of the person you enter this for is empty; write something before sending it.
empty-version-name = The name of the version is empty; give the version a name people will recognise.
already-member = { $member } is already a member of this process; invite a new member with a new id.
device-taken = This device id already belongs to { $owner }; each device needs its own id.
device-key-changed = This device is already registered with another signing key; a device keeps its key. Use a new device id with a new key.
phase-not-next = The process is in the { $phase } phase and can only move on to the { $next } phase, not to { $to }.
phase-is-last = The process is in the { $phase } phase, which is the last one; it cannot move to { $to }.
not-a-thread = { $id } is not a comment or suggestion, so it does not start a thread; reply to the thread's first contribution.
suggestion-unchanged = The suggested wording is the same as the current text; change something before suggesting it.
not-a-suggestion = { $id } is a comment, not a suggestion; only suggestions can be accepted or rejected.
suggestion-passage-deleted = The passage this suggestion was about has been deleted, so it can no longer be applied; reject it or copy its wording by hand.
article-after-itself = An article cannot be placed after itself; pick another article or the start.
write-in-progress = Another change is being stored; report it with `written` before the next one.
typing-superseded = The text has changed since it was read, and your typing into it has been saved; read the text again and type on in what it shows now.
unknown-language = Klad has no messages in the language "{ $given }"; choose nl (Dutch) or en (English).

## Damaged or foreign documents

not-klad-document = This is not a Klad { $kind }: it has no Klad header. Check that the right document id was used.
wrong-document-kind = This is a Klad { $found } document, not a { $expected }. Check that the right document id was used.
newer-schema = This { $kind } was written by a newer version of Klad (schema version { $found }; this version understands up to { $supported }). Update Klad to open it.
document-empty = The { $kind } is empty (0 bytes), so there is nothing to open. Sync it again from the server or restore it from a backup.
document-unreadable = The { $kind } could not be read: its bytes { $detail }. Sync it again from the server or restore it from a backup.
changes-unreadable = The received changes to the { $kind } could not be read: the bytes { $detail }. Nothing was applied; sync again.
unexpected-structure = The document does not have the structure Klad expects ({ $detail }). Sync it again from the server or restore it from a backup.
no-valid-role = The process document has no valid role for { $member }. Sync it again from the server or restore it from a backup.
no-member-list = The process document has no member list. Sync it again from the server or restore it from a backup.
member-entry-damaged = The entry of member { $member } in the process document is damaged. Sync it again from the server or restore it from a backup.
article-damaged = The article { $article } has no heading or body text. Sync the text again from the server or restore it from a backup.
text-not-editable = The text could not be edited ({ $detail }). Sync the text again from the server or restore it from a backup.
