"""Small grammars for languages outside the six the toolchain targets.

They make the `foreign` defect of the sample corpus: pages language ID must
drop. One rule set per language, same format as the main grammars (the
sentences are in `s`, no topics).
"""

LANGUAGES = {
    "nl": {
        "name": "Daan|Sanne|Bram|Lotte|Jeroen|Femke|Thijs|Eva",
        "city": "Utrecht|Rotterdam|Groningen|Eindhoven|Leiden|Haarlem|Zwolle|Maastricht",
        "day": "maandag|dinsdag|woensdag|donderdag|vrijdag|zaterdag|zondag",
        "thing": "de fiets|het boek|de trein|het huis|de markt|de tuin|het museum|de haven",
        "adj": "mooi|oud|groot|rustig|druk|gezellig|nieuw|klein",
        "s": [
            "{name} woont al {n10_99} jaar in {city} en fietst elke dag naar het werk.",
            "op {day} gaan we met de trein naar {city} om de oude binnenstad te bekijken.",
            "het weer was gisteren erg slecht, maar vandaag schijnt de zon weer.",
            "volgens de gemeente wordt {thing} volgend jaar helemaal gerenoveerd.",
            "de kinderen spelen na school graag buiten in het park bij de gracht.",
            "wij vinden {thing} heel {adj}, vooral in de zomer.",
            "in {city} zijn de huizen duur geworden, zeker voor jonge gezinnen.",
            "hoeveel kost een kaartje voor de bus naar het centrum?",
            "mijn buurman heeft een nieuwe fiets gekocht voor {price} euro.",
            "het is niet altijd makkelijk om een goede oplossing te vinden.",
            "de bibliotheek is op {day} open tot negen uur 's avonds.",
            "we hebben samen gegeten en daarna een lange wandeling gemaakt.",
        ],
    },
    "pl": {
        "name": "Kasia|Tomek|Agnieszka|Paweł|Magda|Krzysztof|Ola|Michał",
        "city": "Kraków|Gdańsk|Wrocław|Poznań|Łódź|Lublin|Toruń|Szczecin",
        "day": "poniedziałek|wtorek|środę|czwartek|piątek|sobotę|niedzielę",
        "s": [
            "{name} mieszka w mieście {city} od {n10_99} lat i codziennie jeździ do pracy tramwajem.",
            "w {day} pojedziemy pociągiem do miasta {city}, żeby zobaczyć stare miasto.",
            "wczoraj pogoda była bardzo zła, ale dzisiaj znowu świeci słońce.",
            "według urzędu miasta most zostanie wyremontowany w przyszłym roku.",
            "dzieci po szkole lubią bawić się w parku nad rzeką.",
            "ceny mieszkań bardzo wzrosły, szczególnie dla młodych rodzin.",
            "ile kosztuje bilet na autobus do centrum?",
            "mój sąsiad kupił nowy rower za {n100_999} złotych.",
            "nie zawsze łatwo jest znaleźć dobre rozwiązanie tego problemu.",
            "biblioteka jest otwarta do dziewiątej wieczorem.",
            "zjedliśmy razem obiad, a potem poszliśmy na długi spacer po lesie.",
            "w zeszłym tygodniu w naszej dzielnicy otwarto nową piekarnię.",
        ],
    },
    "sv": {
        "name": "Erik|Karin|Lars|Ingrid|Johan|Elsa|Anders|Maja",
        "city": "Uppsala|Göteborg|Malmö|Lund|Umeå|Örebro|Västerås|Linköping",
        "day": "måndag|tisdag|onsdag|torsdag|fredag|lördag|söndag",
        "s": [
            "{name} har bott i {city} i {n10_99} år och cyklar till jobbet varje dag.",
            "på {day} åker vi tåg till {city} för att titta på den gamla stadskärnan.",
            "vädret var väldigt dåligt i går, men i dag skiner solen igen.",
            "enligt kommunen ska bron renoveras helt nästa år.",
            "barnen tycker om att leka i parken vid sjön efter skolan.",
            "bostäderna i {city} har blivit dyra, särskilt för unga familjer.",
            "hur mycket kostar en biljett till bussen mot centrum?",
            "min granne köpte en ny cykel för {n100_999} kronor.",
            "det är inte alltid lätt att hitta en bra lösning på problemet.",
            "biblioteket är öppet till klockan nio på kvällen.",
            "vi åt middag tillsammans och tog sedan en lång promenad i skogen.",
            "förra veckan öppnade ett nytt bageri i vårt kvarter.",
        ],
    },
    "tr": {
        "name": "Ayşe|Mehmet|Elif|Mustafa|Zeynep|Emre|Fatma|Burak",
        "city": "İzmir|Ankara|Bursa|Antalya|Konya|Eskişehir|Trabzon|Kayseri",
        "s": [
            "{name} {n10_99} yıldır {city} şehrinde yaşıyor ve her gün işe otobüsle gidiyor.",
            "hafta sonu trenle {city} şehrine gidip eski çarşıyı gezeceğiz.",
            "dün hava çok kötüydü, ama bugün yine güneş açtı.",
            "belediyeye göre köprü gelecek yıl tamamen yenilenecek.",
            "çocuklar okuldan sonra nehir kenarındaki parkta oynamayı seviyor.",
            "ev fiyatları özellikle genç aileler için çok yükseldi.",
            "şehir merkezine giden otobüs bileti ne kadar?",
            "komşum {n100_999} liraya yeni bir bisiklet aldı.",
            "bu soruna iyi bir çözüm bulmak her zaman kolay değil.",
            "kütüphane akşam saat dokuza kadar açık.",
            "birlikte akşam yemeği yedik ve sonra ormanda uzun bir yürüyüş yaptık.",
            "geçen hafta mahallemizde yeni bir fırın açıldı.",
        ],
    },
    "id": {
        "name": "Budi|Siti|Agus|Dewi|Rudi|Wati|Andi|Putri",
        "city": "Bandung|Surabaya|Yogyakarta|Semarang|Medan|Malang|Makassar|Bogor",
        "s": [
            "{name} sudah tinggal di {city} selama {n10_99} tahun dan setiap hari naik motor ke kantor.",
            "akhir pekan ini kami akan naik kereta ke {city} untuk melihat kota tua.",
            "kemarin cuacanya sangat buruk, tetapi hari ini matahari bersinar lagi.",
            "menurut pemerintah kota, jembatan itu akan diperbaiki tahun depan.",
            "anak-anak suka bermain di taman dekat sungai setelah pulang sekolah.",
            "harga rumah sudah naik banyak, terutama untuk keluarga muda.",
            "berapa harga tiket bus ke pusat kota?",
            "tetangga saya membeli sepeda baru seharga {n100_999} ribu rupiah.",
            "tidak selalu mudah untuk menemukan jalan keluar yang baik untuk masalah ini.",
            "perpustakaan buka sampai jam sembilan malam.",
            "kami makan malam bersama lalu berjalan-jalan lama di hutan.",
            "minggu lalu sebuah toko roti baru dibuka di dekat rumah kami.",
        ],
    },
}

SITES = {
    "nl": ["www.stadsnieuws.nl", "blog.fietsroutes.nl"],
    "pl": ["www.wiadomosci-lokalne.pl", "blog.podroze.pl"],
    "sv": ["www.lokaltidning.se", "blog.resor.se"],
    "tr": ["www.yerelhaber.com.tr", "blog.gezi.com.tr"],
    "id": ["www.beritakota.co.id", "blog.jalanjalan.co.id"],
}
