"""Invented names and French/German contact-centre phrases for the benchmark workload.

Every person is fictitious; the phrases are what customers of a Walloon grid operator and
its agents plausibly write (outages, meters, bills, interventions), so message bodies have
realistic length and character mix (accents, umlauts, punctuation).
"""

from __future__ import annotations

from typing import Final

FIRST_NAMES: Final = {
    "fr": ("Léa", "Marc", "Julie", "Thomas", "Chloé", "Nicolas", "Camille", "Olivier",
           "Manon", "Julien", "Élodie", "François", "Sophie", "Mathieu", "Aurélie", "Cédric",
           "Isabelle", "Benoît", "Nathalie", "Grégory"),
    "de": ("Anna", "Lukas", "Marie", "Jonas", "Laura", "Stefan", "Katrin", "Jürgen",
           "Sabine", "Matthias", "Lena", "Andreas", "Monika", "Tobias", "Ursula", "Björn"),
}  # fmt: skip

LAST_NAMES: Final = {
    "fr": ("Dupont", "Lambert", "Martin", "Dubois", "Leroy", "Renard", "Lefèvre", "Collard",
           "Masson", "Jacquet", "Delvaux", "Piette", "Gérard", "Hubert", "Willems", "Mathy",
           "Lemaire", "Charlier", "Noël", "Fontaine"),
    "de": ("Schmitz", "Müller", "Kessler", "Lentz", "Heinen", "Mreyen", "Cremer", "Kohnen",
           "Radermacher", "Thissen", "Jousten", "Pauquet", "Förster", "Brüll"),
}  # fmt: skip

TOWNS: Final = {
    "fr": ("Charleroi", "Gosselies", "Namur", "Mons", "Tournai", "Wavre", "Arlon", "Ciney",
           "Marche-en-Famenne", "Binche", "Fleurus", "Gembloux"),
    "de": ("Eupen", "Kelmis", "Raeren", "Lontzen", "Sankt Vith", "Bütgenbach", "Amel"),
}  # fmt: skip

CUSTOMER_SENTENCES: Final = {
    "fr": (
        "Bonjour, je n'ai plus de courant depuis ce matin dans toute la maison.",
        "Mon compteur affiche un code d'erreur que je ne comprends pas.",
        "Je conteste le montant de ma facture de régularisation, il me paraît beaucoup trop élevé.",
        "Le technicien devait passer hier entre 8h et 12h mais personne n'est venu.",
        "Pouvez-vous me dire quand le courant sera rétabli dans la rue de la Station ?",
        "J'ai relevé mon index le 12 février et il ne correspond pas à celui de la facture.",
        "Les voisins ont aussi une coupure, l'éclairage public est éteint depuis 22h.",
        "Je souhaite faire placer un compteur communicant, quelles sont les démarches ?",
        "Mon raccordement au réseau de gaz est en attente depuis trois mois.",
        "Je vous ai déjà envoyé une photo du compteur la semaine dernière, sans réponse.",
        "Merci de me rappeler sur mon portable après 17h, je travaille en journée.",
        "Il y a une odeur de gaz près du coffret extérieur, est-ce dangereux ?",
        "Le disjoncteur saute dès que j'allume le four et la machine à laver en même temps.",
        "Je déménage à la fin du mois et je voudrais transmettre les index de fermeture.",
    ),
    "de": (
        "Guten Tag, seit heute Morgen haben wir im ganzen Haus keinen Strom mehr.",
        "Mein Zähler zeigt eine Fehlermeldung an, die ich nicht verstehe.",
        "Ich widerspreche der Jahresabrechnung, der Betrag ist viel zu hoch.",
        "Der Techniker sollte gestern zwischen 8 und 12 Uhr kommen, niemand ist erschienen.",
        "Wann wird die Stromversorgung in der Bahnhofstraße wiederhergestellt?",
        "Der Zählerstand vom 12. Februar stimmt nicht mit der Rechnung überein.",
        "Auch die Nachbarn sind betroffen, die Straßenbeleuchtung ist seit 22 Uhr aus.",
        "Ich möchte einen intelligenten Zähler einbauen lassen, wie gehe ich vor?",
        "Mein Gasanschluss wartet seit drei Monaten auf die Freigabe.",
        "Bitte rufen Sie mich nach 17 Uhr auf meinem Handy zurück.",
        "Am Außenkasten riecht es nach Gas, ist das gefährlich?",
        "Ich ziehe Ende des Monats um und möchte die Schlusszählerstände mitteilen.",
    ),
}  # fmt: skip

AGENT_SENTENCES: Final = {
    "fr": (
        "Merci pour votre message, je vérifie immédiatement votre dossier.",
        "Une équipe d'intervention est sur place, le rétablissement est prévu vers 21h.",
        "Pourriez-vous me communiquer votre code EAN, il commence par 5414 ?",
        "Je transmets votre réclamation au service facturation, qui vous répondra sous dix jours.",
        "Un nouveau rendez-vous vous est proposé jeudi entre 13h et 17h.",
        "Pour toute odeur de gaz, quittez le logement et appelez le numéro d'urgence.",
        "Je vous confirme la bonne réception de vos index de fermeture.",
        "Nous vous prions de nous excuser pour ce désagrément.",
    ),
    "de": (
        "Vielen Dank für Ihre Nachricht, ich prüfe sofort Ihre Akte.",
        "Ein Einsatzteam ist vor Ort, die Versorgung wird gegen 21 Uhr wiederhergestellt.",
        "Könnten Sie mir bitte Ihren EAN-Code mitteilen? Er beginnt mit 5414.",
        "Ich leite Ihre Beschwerde an die Abrechnungsabteilung weiter.",
        "Wir schlagen Ihnen einen neuen Termin am Donnerstag zwischen 13 und 17 Uhr vor.",
        "Ich bestätige den Eingang Ihrer Schlusszählerstände.",
        "Wir entschuldigen uns für die Unannehmlichkeiten.",
    ),
}  # fmt: skip

BOT_SENTENCES: Final = {
    "fr": ("Bonjour, je suis l'assistant virtuel d'ORES. Comment puis-je vous aider ?",
           "Je vous mets en relation avec un conseiller.",
           "Pouvez-vous préciser votre code postal ?"),
    "de": ("Guten Tag, ich bin der virtuelle Assistent von ORES. Wie kann ich helfen?",
           "Ich verbinde Sie mit einem Berater.",
           "Können Sie bitte Ihre Postleitzahl angeben?"),
}  # fmt: skip

EMAIL_SUBJECTS: Final = {
    "fr": ("Réclamation facture de régularisation", "Coupure de courant", "Relevé d'index",
           "Demande de rendez-vous technicien", "Raccordement gaz", "Compteur communicant"),
    "de": ("Beschwerde Jahresabrechnung", "Stromausfall", "Zählerstand", "Technikertermin",
           "Gasanschluss", "Intelligenter Zähler"),
}  # fmt: skip

GREETINGS: Final = {"fr": "Madame, Monsieur,", "de": "Sehr geehrte Damen und Herren,"}
CLOSINGS: Final = {"fr": "Bien cordialement,", "de": "Mit freundlichen Grüßen"}
